import type { TestProject } from "vitest/node"
import { startPostgres } from "../../dev/postgres"

declare module "vitest" {
  export interface ProvidedContext {
    /** Superuser URL to the "postgres" database of this run's server. */
    readonly postgresUrl: string
  }
}

/** Starts one Postgres server for the whole `vitest run` and stops it at teardown. */
export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const verbose = !!process.env.CONDUCTOR_PG_LOG
  const started = Date.now()
  const server = await startPostgres(verbose ? { log: (line) => console.error(`[postgres] ${line}`) } : {})
  if (verbose) console.error(`[postgres] ${server.source} server ready in ${Date.now() - started} ms: ${server.url}`)
  project.provide("postgresUrl", server.url)
  return () => server.stop()
}
