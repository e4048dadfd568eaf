import { Effect } from "effect"

/** Logs a recoverable failure in one line: what was being done and why it failed. */
export const warn = (doing: string) => (error: unknown) =>
  Effect.logWarning(`effect-conductor: ${doing} failed: ${
    typeof error === "object" && error !== null && "message" in error ? String(error.message) : String(error)
  }`)
