/**
 * `npm run example:workflow`: the durable workflow alone. process-number
 * validates its input (a step), invokes the double task as a child, adds 10
 * (a step), sleeps durably and saves (a step); `get` shows the recorded steps.
 */
import { Effect } from "effect"
import { Conductor } from "../src/index.ts"
import { runLocally } from "./local.ts"
import { ProcessNumber } from "./tasks.ts"

runLocally(Effect.gen(function*() {
  const conductor = yield* Conductor.Conductor
  for (const input of ["16", "x"]) {
    const id = yield* conductor.invoke(ProcessNumber, { input })
    const outcome = yield* conductor.result(ProcessNumber, id).pipe(
      Effect.map((r) => `completed: ${r.input} -> ${r.output} (saved at ${r.savedAt})`),
      Effect.catchTag("NameRejected", (e) => Effect.succeed(`failed with NameRejected (${e.reason})`))
    )
    const info = yield* conductor.get(id)
    yield* Effect.log(`process-number(${JSON.stringify(input)}) ${outcome}`)
    for (const step of info.steps) {
      yield* Effect.log(`  ${step.kind} ${step.name}: ${step.outcome} ${JSON.stringify(step.value)} (attempt ${step.attempt})`)
    }
    for (const child of info.children) yield* Effect.log(`  child ${child.task} ${child.id}: ${child.status}`)
  }
}))
