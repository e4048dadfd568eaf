import { Cause, Effect, Exit, Schema } from "effect"
import type { AnySchema } from "../Task.ts"
import { compileFastDecoder, compileFastEncoder } from "./jsonFastPath.ts"

type Parser = (input: unknown) => Effect.Effect<unknown, Schema.SchemaError>

/** JSON codecs derived once per schema (a step passes the same schema on every call). */
const jsonCodecs = new WeakMap<AnySchema, AnySchema>()
/** The fast paths of each JSON codec whose schema they cover (see jsonFastPath.ts). */
const fastDecoders = new WeakMap<AnySchema, (input: unknown) => unknown>()
const fastEncoders = new WeakMap<AnySchema, (value: unknown) => unknown>()

/**
 * The JSON codec of a schema (`Schema.toCodecJson`), the one way stored
 * payloads, results, errors and step values are encoded and decoded.
 */
export const jsonCodec = (schema: AnySchema): AnySchema => {
  let codec = jsonCodecs.get(schema)
  if (codec === undefined) {
    codec = Schema.toCodecJson(schema)
    jsonCodecs.set(schema, codec)
    const decoder = compileFastDecoder(schema.ast)
    if (decoder !== undefined) fastDecoders.set(codec, decoder)
    const encoder = compileFastEncoder(schema.ast)
    if (encoder !== undefined) fastEncoders.set(codec, encoder)
  }
  return codec
}

/**
 * Parsers built once per schema. `Schema.decodeUnknownEffect(codec)` builds
 * a parser on every call, and the `Exit` variants run each parse in a fiber of
 * its own; these are built once and return the parse's `Exit` directly.
 */
const decoders = new WeakMap<AnySchema, Parser>()
const encoders = new WeakMap<AnySchema, Parser>()
const decoderOf = (codec: AnySchema): Parser => {
  let parser = decoders.get(codec)
  if (parser === undefined) decoders.set(codec, parser = Schema.decodeUnknownEffect(codec) as Parser)
  return parser
}
const encoderOf = (codec: AnySchema): Parser => {
  let parser = encoders.get(codec)
  if (parser === undefined) encoders.set(codec, parser = Schema.encodeUnknownEffect(codec) as Parser)
  return parser
}

/** A parse that finished synchronously is already its `Exit`; only one that did not needs a fiber. */
const exitOf = <A, E>(effect: Effect.Effect<A, E>): Exit.Exit<A, E> =>
  Exit.isExit(effect) ? (effect as Exit.Exit<A, E>) : Effect.runSyncExit(effect)

/** Decodes stored JSON with a schema's JSON codec. */
export const decodeJson = (codec: AnySchema, value: unknown): Effect.Effect<unknown, Schema.SchemaError> => {
  const decoded = fastDecoders.get(codec)?.(value)
  return decoded !== undefined ? Effect.succeed(decoded) : decoderOf(codec)(value)
}

/**
 * What each codec encodes `undefined` to (a task without a success schema
 * returns it from every handler): encoding is a pure function of the value,
 * so it is computed once.
 */
const undefinedEncodings = new WeakMap<AnySchema, Exit.Exit<unknown, Schema.SchemaError>>()

/** Synchronous variants for the worker's hot path (contract schemas need no services). */
export const encodeJsonExit = (codec: AnySchema, value: unknown): Exit.Exit<unknown, Schema.SchemaError> => {
  if (value !== undefined) {
    const encoded = fastEncoders.get(codec)?.(value)
    return encoded !== undefined ? Exit.succeed(encoded) : exitOf(encoderOf(codec)(value))
  }
  let exit = undefinedEncodings.get(codec)
  if (exit === undefined) undefinedEncodings.set(codec, exit = exitOf(encoderOf(codec)(undefined)))
  return exit
}
export const decodeJsonExit = (codec: AnySchema, value: unknown): Exit.Exit<unknown, Schema.SchemaError> => {
  const decoded = fastDecoders.get(codec)?.(value)
  return decoded !== undefined ? Exit.succeed(decoded) : exitOf(decoderOf(codec)(value))
}

/** A readable one-line-plus-stack description of a cause, for stored defects. */
export const describeCause = (cause: Cause.Cause<unknown>): string => Cause.pretty(cause)

/** Runs `effect`, turning any failure into a defect message (for encoding that should not fail). */
export const orDefectMessage = <A, E>(effect: Effect.Effect<A, E>) =>
  Effect.mapError(effect, (error) => (error instanceof Error ? error.message : String(error)))
