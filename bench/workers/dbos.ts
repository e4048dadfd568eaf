// DBOS Transact: DBOS.registerWorkflow with `steps` DBOS.runStep no-op steps;
// on "go", `workflows` workflows run with `inFlight` at a time; start() resolves when all are done.
import type { WorkerFactory } from "../lib/worker-host.ts"

const factory: WorkerFactory = async ({ dbUrl, options }) => {
  const { workflows, steps, inFlight, warmup, config } = options as {
    workflows: number
    steps: number
    inFlight: number
    warmup: number
    config: Record<string, unknown>
  }
  const { DBOS } = await import("@dbos-inc/dbos-sdk")
  DBOS.setConfig({ name: "bench", systemDatabaseUrl: dbUrl, ...config } as any)
  const workflow = DBOS.registerWorkflow(
    async (id: number) => {
      let acc = 0
      for (let s = 0; s < steps; s++) acc += await DBOS.runStep(async () => s, { name: `step-${s}` })
      return acc + id * 0
    },
    { name: "tenSteps" }
  )
  await DBOS.launch()
  const runAll = async (count: number) => {
    let next = 0
    await Promise.all(
      Array.from({ length: inFlight }, async () => {
        while (next < count) await workflow(next++)
      })
    )
  }
  await runAll(warmup) // untimed
  return {
    start: async () => {
      await runAll(workflows)
      return { workflows, steps: workflows * steps }
    },
    stop: async () => {
      await DBOS.shutdown()
    }
  }
}
export default factory
