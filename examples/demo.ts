/**
 * `npm run demo`: a worker and a few invocations in one process, on the
 * Postgres at DATABASE_URL or, when unset, on an embedded server started for
 * the demo and removed afterwards. Prints what runs and its results, then exits.
 */
import { Effect } from "effect"
import { Conductor } from "../src/index.ts"
import { runLocally } from "./local.ts"
import { Greet, ProcessNumber } from "./tasks.ts"

const program = Effect.gen(function*() {
  const conductor = yield* Conductor.Conductor

  yield* Effect.log("-- plain tasks: invoke, run on the worker, await typed results")
  for (const name of ["Ada", "Grace", ""]) {
    const id = yield* conductor.invoke(Greet, { name })
    yield* Effect.log(`invoked greet(${JSON.stringify(name)}) as ${id}`)
    const outcome = yield* conductor.result(Greet, id).pipe(
      Effect.map((r) => `completed: ${r.greeting}`),
      Effect.catchTag("NameRejected", (e) => Effect.succeed(`failed with NameRejected (${e.reason})`))
    )
    const info = yield* conductor.get(id)
    yield* Effect.log(`  ${outcome} after ${info.attempts} attempt(s)`)
  }

  yield* Effect.log("-- a durable workflow: validate, invoke a child, transform, sleep, save")
  const ids = yield* conductor.invokeMany(ProcessNumber, [{ payload: { input: "16" } }, { payload: { input: "x" } }])
  for (const id of ids) {
    const outcome = yield* conductor.result(ProcessNumber, id).pipe(
      Effect.map((r) => `completed: ${r.input} -> ${r.output} (saved at ${r.savedAt})`),
      Effect.catchTag("NameRejected", (e) => Effect.succeed(`failed with NameRejected (${e.reason})`))
    )
    const info = yield* conductor.get(id)
    yield* Effect.log(`process-number ${id}: ${outcome}`)
    yield* Effect.log(`  steps: ${info.steps.map((s) => `${s.name}=${s.outcome}`).join(", ")}; children: ${info.children.length}`)
  }
})

runLocally(Effect.andThen(program, Effect.log("done")))
