import { Cause, Effect, Schema } from "effect"
import type { AnySchema } from "../Task.ts"

/** Encodes a value to JSON with a schema's JSON codec (validating it on the way). */
export const encodeJson = (codec: AnySchema, value: unknown) => Schema.encodeUnknownEffect(codec)(value)

/** Decodes stored JSON with a schema's JSON codec. */
export const decodeJson = (codec: AnySchema, value: unknown) => Schema.decodeUnknownEffect(codec)(value)

/** Synchronous variants for the worker's hot path (contract schemas need no services). */
export const encodeJsonExit = (codec: AnySchema, value: unknown) => Schema.encodeUnknownExit(codec)(value)
export const decodeJsonExit = (codec: AnySchema, value: unknown) => Schema.decodeUnknownExit(codec)(value)

/** A readable one-line-plus-stack description of a cause, for stored defects. */
export const describeCause = (cause: Cause.Cause<unknown>): string => Cause.pretty(cause)

/** Runs `effect`, turning any failure into a defect message (for encoding that should not fail). */
export const orDefectMessage = <A, E>(effect: Effect.Effect<A, E>) =>
  Effect.mapError(effect, (error) => (error instanceof Error ? error.message : String(error)))
