// effect-conductor W3: a task of `steps` sequential Durable.step calls; on "go",
// `workflows` executions are invoked at once and a worker with concurrency
// `inFlight` runs them; start() resolves when every result is in.
import { Effect, Exit, Layer, Schema, Scope } from "effect"
import type { WorkerFactory } from "../lib/worker-host.ts"
import { stack } from "../lib/conductor.ts"
import { Conductor, Durable, Task, Worker } from "effect-conductor"

const factory: WorkerFactory = async ({ dbUrl, options }) => {
  const { workflows, steps, inFlight, warmup } = options as { workflows: number; steps: number; inFlight: number; warmup: number }
  const Steps = Task.make("steps", { payload: Schema.Struct({ i: Schema.Number }), success: Schema.Number })
  const StepsLive = Steps.toLayer(({ i }) =>
    Effect.gen(function*() {
      let acc = 0
      for (let s = 0; s < steps; s++) acc += yield* Durable.step(`step-${s}`, Effect.succeed(s))
      return acc + i * 0
    })
  )
  const scope = Effect.runSync(Scope.make())
  // The stack and an idle worker are up before "go" (not timed); nothing is invoked yet.
  const context = await Effect.runPromise(
    Layer.buildWithScope(
      // 24 handlers run at once; the next 24 executions wait claimed (not started), as W1 prefetches.
      Worker.Worker.layer({ concurrency: inFlight, prefetch: inFlight }).pipe(
        Layer.provide(StepsLive),
        Layer.provideMerge(stack(dbUrl, 8))
      ),
      scope
    )
  )
  const run = <A, E>(effect: Effect.Effect<A, E, Conductor.Conductor>) => Effect.runPromise(Effect.provideContext(effect, context))
  const runAll = (count: number) =>
    run(Effect.gen(function*() {
      const conductor = yield* Conductor.Conductor
      const ids = yield* conductor.invokeMany(Steps, Array.from({ length: count }, (_, i) => ({ payload: { i } })))
      yield* Effect.forEach(ids, (id) => conductor.result(Steps, id), { concurrency: "unbounded", discard: true })
    }) as never)
  await runAll(warmup) // untimed
  return {
    start: async () => {
      await runAll(workflows)
      return { workflows, steps: workflows * steps }
    },
    stop: async () => {
      await Effect.runPromise(Scope.close(scope, Exit.void))
    }
  }
}
export default factory
