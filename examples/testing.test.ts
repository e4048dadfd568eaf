/**
 * Testing a multi-day workflow in milliseconds.
 *
 * A trial subscription: welcome mail now, a reminder on day 11, the card
 * charged on day 14 (a child task, retried with backoff when the card is
 * declined), then a receipt. Two weeks of workflow, tested with
 * `TestConductor` and `TestClock` without Postgres and without waiting.
 *
 * Run it with `npx vitest run examples/testing.test.ts`.
 */
import { assert, describe, it } from "@effect/vitest"
import { Clock, Context, Effect, Layer, Schema } from "effect"
import { Conductor, Durable, Task } from "../src/index.ts"
import * as TestConductor from "../src/TestConductor.ts"

// --- contracts ------------------------------------------------------------------

class CardDeclined extends Schema.TaggedError<CardDeclined>()("CardDeclined", {
  customerId: Schema.String,
  attempt: Schema.Number
}) {}

const ChargeCard = Task.make("charge-card", {
  payload: Schema.Struct({ customerId: Schema.String, cents: Schema.Number }),
  success: Schema.Struct({ receipt: Schema.String }),
  error: CardDeclined,
  maxAttempts: 4,
  // 1 hour, then 2, then 4 (no jitter, so the test can name the exact times).
  retry: { backoff: "exponential", base: "1 hour", max: "1 day", jitter: false }
})

const Trial = Task.make("trial", {
  payload: Schema.Struct({ customerId: Schema.String }),
  success: Schema.Struct({ receipt: Schema.String }),
  error: CardDeclined,
  // A declined card is final for the trial: its child already retried.
  maxAttempts: 1
})

// --- services the handlers use (faked in tests) --------------------------------

class Mailer extends Context.Service<Mailer, {
  readonly send: (to: string, template: string) => Effect.Effect<void>
}>()("example/Mailer") {}

class Gateway extends Context.Service<Gateway, {
  readonly charge: (customerId: string, cents: number) => Effect.Effect<string, "declined">
}>()("example/Gateway") {}

// --- handlers -------------------------------------------------------------------

const TrialLive = Trial.toLayer(Effect.fnUntraced(function*({ customerId }) {
  const mailer = yield* Mailer
  yield* Durable.step("welcome", mailer.send(customerId, "welcome"), { success: Schema.Void })
  yield* Durable.sleep("until reminder", "11 days")
  yield* Durable.step("reminder", mailer.send(customerId, "trial ends in 3 days"), { success: Schema.Void })
  yield* Durable.sleep("until charge", "3 days")
  const { receipt } = yield* Durable.invoke("charge", ChargeCard, { customerId, cents: 9_900 }).pipe(
    // The child's own typed error stays typed; anything else is a defect here.
    Effect.catchTags({ ExecutionFailed: Effect.die, ExecutionCancelled: Effect.die, ChildTimedOut: Effect.die })
  )
  yield* Durable.step("receipt", mailer.send(customerId, `receipt ${receipt}`), { success: Schema.Void })
  return { receipt }
}))

const ChargeCardLive = ChargeCard.toLayer(Effect.fnUntraced(function*({ cents, customerId }) {
  const gateway = yield* Gateway
  const { attempt } = yield* Durable.execution
  const receipt = yield* gateway.charge(customerId, cents).pipe(
    Effect.mapError(() => new CardDeclined({ customerId, attempt }))
  )
  return { receipt }
}))

// --- fakes ----------------------------------------------------------------------

const HOUR = 3_600_000
const DAY = 24 * HOUR

/** Records every mail with the (test) time it was sent. */
class SentMail extends Context.Service<SentMail, Array<{ readonly template: string; readonly at: number }>>()("example/SentMail") {}

const FakeMailer = Layer.effect(Mailer, Effect.gen(function*() {
  const sent = yield* SentMail
  return Mailer.of({
    send: (_to, template) => Effect.map(Clock.currentTimeMillis, (at) => void sent.push({ template, at }))
  })
})).pipe(Layer.provideMerge(Layer.sync(SentMail, () => [])))

/** Declines the first `declines` charges. */
const FakeGateway = (declines: number) =>
  Layer.sync(Gateway, () => {
    let calls = 0
    return Gateway.of({
      charge: () => Effect.suspend(() => (++calls <= declines ? Effect.fail("declined" as const) : Effect.succeed(`r-${calls}`)))
    })
  })

/** The workflow's handlers over the in-memory test conductor, with fake mail and payments. */
const TestLive = (declines: number) =>
  Layer.mergeAll(TrialLive, ChargeCardLive).pipe(
    Layer.provideMerge(TestConductor.layer()),
    Layer.provideMerge(FakeMailer),
    Layer.provideMerge(FakeGateway(declines))
  )

// --- tests ----------------------------------------------------------------------

describe("a two-week trial", () => {
  it.effect("mails on day 0 and 11, charges on day 14 after two declines, in well under a second", () =>
    Effect.gen(function*() {
      const startedReally = Date.now()
      const conductor = yield* Conductor.Conductor
      const t0 = yield* Clock.currentTimeMillis
      const id = yield* conductor.invoke(Trial, { customerId: "c-1" })

      // Moves the TestClock from one due time to the next until the trial ends.
      const { receipt } = yield* TestConductor.result(Trial, id)
      assert.strictEqual(receipt, "r-3")

      const sent = yield* SentMail
      assert.deepStrictEqual(sent.map(({ at, template }) => [template, (at - t0) / HOUR]), [
        ["welcome", 0],
        ["trial ends in 3 days", 11 * 24],
        // Charged at day 14, declined, retried 1 hour and then 2 hours later.
        ["receipt r-3", 14 * 24 + 3]
      ])

      // What was invoked, and how it went.
      const [charge] = yield* TestConductor.invoked(ChargeCard)
      assert.deepStrictEqual(charge!.payload, { customerId: "c-1", cents: 9_900 })
      assert.strictEqual(charge!.parentId, id)
      assert.strictEqual(yield* TestConductor.attempts(charge!.id), 3)
      const steps = yield* TestConductor.steps(id)
      assert.deepStrictEqual(Object.keys(steps), ["welcome", "until reminder", "reminder", "until charge", "charge", "receipt"])

      assert.isBelow(Date.now() - startedReally, 1000, "two weeks of workflow in under a second")
    }).pipe(Effect.provide(TestLive(2))))

  it.effect("nothing is charged before day 14", () =>
    Effect.gen(function*() {
      const conductor = yield* Conductor.Conductor
      const id = yield* conductor.invoke(Trial, { customerId: "c-2" })

      yield* TestConductor.advance("13 days")
      assert.strictEqual(yield* TestConductor.status(id), "waiting")
      assert.deepStrictEqual(yield* TestConductor.invoked(ChargeCard), [])
      assert.deepStrictEqual((yield* SentMail).map((m) => m.template), ["welcome", "trial ends in 3 days"])

      yield* TestConductor.advance("1 day")
      assert.strictEqual((yield* TestConductor.invoked(ChargeCard)).length, 1)
      assert.strictEqual((yield* conductor.result(Trial, id)).receipt, "r-1")
    }).pipe(Effect.provide(TestLive(0))))

  it.effect("a card declined on every attempt fails the trial with the child's typed error", () =>
    Effect.gen(function*() {
      const conductor = yield* Conductor.Conductor
      const t0 = yield* Clock.currentTimeMillis
      const id = yield* conductor.invoke(Trial, { customerId: "c-3" })

      const error = yield* Effect.flip(TestConductor.result(Trial, id))
      assert.instanceOf(error, CardDeclined)
      assert.strictEqual((error as CardDeclined).attempt, 4)
      // Day 14, then retries after 1, 2 and 4 hours.
      assert.strictEqual(((yield* Clock.currentTimeMillis) - t0) / HOUR, 14 * 24 + 7)
      assert.strictEqual(yield* TestConductor.attempts((yield* TestConductor.invoked(ChargeCard))[0]!.id), 4)
      assert.strictEqual(yield* TestConductor.status(id), "failed")
      assert.deepStrictEqual((yield* SentMail).map((m) => m.template), ["welcome", "trial ends in 3 days"])
    }).pipe(Effect.provide(TestLive(Infinity))))
})

void DAY
