/**
 * A worker's settings, checked and with their defaults applied.
 */
import { Duration, Effect } from "effect"
import { InvalidConfig } from "../../Errors.ts"
import type { WorkerOptions } from "../../Worker.ts"

const millis = (input: Duration.Input | undefined, fallback: number) =>
  input === undefined ? fallback : Duration.toMillis(input)

/** Checks the options (bad ones are an `InvalidConfig`) and fills in the defaults. */
export const validate = (options: WorkerOptions) =>
  Effect.gen(function*() {
    const concurrency = options.concurrency ?? 10
    if (!Number.isInteger(concurrency) || concurrency < 1) {
      return yield* new InvalidConfig({ message: `Worker concurrency must be a positive integer, got ${concurrency}` })
    }
    const prefetch = options.prefetch ?? concurrency
    if (!Number.isInteger(prefetch) || prefetch < 0) {
      return yield* new InvalidConfig({ message: `Worker prefetch must be a non-negative integer, got ${prefetch}` })
    }
    const claimBatch = options.claimBatch ?? concurrency + prefetch
    if (!Number.isInteger(claimBatch) || claimBatch < 1) {
      return yield* new InvalidConfig({ message: `Worker claimBatch must be a positive integer, got ${claimBatch}` })
    }
    const leaseMillis = millis(options.leaseDuration, 30_000)
    const heartbeatMillis = millis(options.heartbeatInterval, leaseMillis / 3)
    if (!(leaseMillis > 0) || !(heartbeatMillis > 0) || heartbeatMillis >= leaseMillis) {
      return yield* new InvalidConfig({
        message: `Worker heartbeatInterval (${heartbeatMillis} ms) must be positive and shorter than leaseDuration (${leaseMillis} ms)`
      })
    }
    return {
      queue: options.queue ?? "default",
      concurrency,
      prefetch,
      claimBatch,
      leaseMillis,
      heartbeatMillis,
      pollMillis: millis(options.pollInterval, 2_000),
      graceMillis: millis(options.shutdownGrace, 10_000),
      inlineSleepMillis: millis(options.inlineSleep, 1_000)
    }
  })
