/**
 * The worker's buffer (src/internal/worker/fifo.ts) behaves as an array used
 * as a queue would, across its compactions.
 */
import { assert, describe, it } from "@effect/vitest"
import { Fifo } from "../src/internal/worker/fifo.ts"

/** A small deterministic generator, so a failure can be replayed. */
const random = (seed: number) => () => {
  seed = (seed * 1103515245 + 12345) % 2147483648
  return seed / 2147483648
}

describe("Fifo", () => {
  it("matches an array through 20,000 random pushes (filling, then draining), shifts, unshifts, lookups, replacements and removals", () => {
    const next = random(7)
    const fifo = new Fifo<number>()
    const model: Array<number> = []
    let counter = 0
    for (let step = 0; step < 20_000; step++) {
      const r = next()
      // Phases of 2,000 steps that fill, then drain: the head passes the
      // compaction threshold both with items still behind it and empty.
      const filling = Math.floor(step / 2000) % 2 === 0
      if (r < (filling ? 0.5 : 0.3)) {
        fifo.push(counter)
        model.push(counter++)
      } else if (r < 0.85) {
        assert.strictEqual(fifo.shift(), model.shift())
      } else if (r < 0.9) {
        fifo.unshift(counter)
        model.unshift(counter++)
      } else if (r < 0.95 && model.length > 0) {
        const wanted = model[Math.floor(next() * model.length)]!
        const index = fifo.findIndex((n) => n === wanted)
        assert.strictEqual(index, model.indexOf(wanted))
        if (next() < 0.5) {
          fifo.removeAt(index)
          model.splice(index, 1)
        } else {
          fifo.set(index, -wanted)
          model[index] = -wanted
        }
      }
      assert.strictEqual(fifo.length, model.length)
    }
    assert.deepStrictEqual(fifo.map((n) => n), model)
    assert.deepStrictEqual(fifo.takeAll(), model)
    assert.strictEqual(fifo.length, 0)
    assert.strictEqual(fifo.shift(), undefined)
    assert.strictEqual(fifo.findIndex(() => true), -1)
  })
})
