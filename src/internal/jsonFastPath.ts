/**
 * A fast path for encoding values to JSON and decoding stored JSON with a
 * contract's schema.
 *
 * Schema's JSON codec (`Schema.toCodecJson`) is general: each value goes
 * through the parser's effects and exits, and through the JSON forms it adds
 * (a Number's JSON form also admits "NaN" and "Infinity"; `undefined` is
 * stored as null). A worker decodes every payload it runs, and in a process
 * that has just started that parser's code runs cold: in a 20k-job drain it
 * took about 5 µs per payload. A producer encodes every payload it invokes.
 *
 * For what payloads and results are mostly made of (structs, arrays, strings,
 * finite numbers, booleans, null, literals, unions of those and optional
 * keys, with or without checks) a valid value is its own JSON form, and
 * encoding or decoding it comes to checking it and copying each struct's
 * declared keys. `compileFastDecoder` and `compileFastEncoder` build that
 * check from the schema's AST once. They answer only where they agree with
 * Schema: anything else (a value that fails, `undefined` and the null that
 * stands for it, a non-finite number and the strings that stand for one)
 * goes to Schema's parser, which also gives the error. A schema with anything
 * else in it (transformations, declarations such as classes or dates,
 * records, tuples, empty structs, recursion, bigints, unknown values) gets no
 * fast path at all.
 */
import type { SchemaAST } from "effect"

/** Schema's parser certainly rejects the value (a union tries its next member). */
const No: unique symbol = Symbol("No")
/** Only Schema's parser can tell (the whole value goes to it). */
const Unsure: unique symbol = Symbol("Unsure")

/** A value's other form (decoded or encoded), or `No` / `Unsure`. Neither form holds symbols, so the answers cannot be mistaken for values. */
type Matcher = (input: unknown) => unknown

/** The strings a Number's JSON form stands for (non-finite numbers). */
const nonFinite = new Set(["NaN", "Infinity", "-Infinity"])

/** Which way a value goes: from its JSON form, or to it. */
type Direction = "decode" | "encode"

/**
 * A decoder that returns the decoded value, or `undefined` when Schema's
 * parser must decide (this path decodes nothing to `undefined`: that is
 * stored as null, which it leaves to Schema). No decoder at all when the
 * schema has parts this path does not cover.
 */
export const compileFastDecoder = (ast: SchemaAST.AST) => answerOrUndefined(compile(ast, "decode"))

/**
 * An encoder that returns the value's JSON form, or `undefined` when Schema's
 * parser must decide (a JSON form is never `undefined`). No encoder at all
 * when the schema has parts this path does not cover.
 */
export const compileFastEncoder = (ast: SchemaAST.AST) => answerOrUndefined(compile(ast, "encode"))

const answerOrUndefined = (matcher: Matcher | undefined): ((input: unknown) => unknown) | undefined =>
  matcher === undefined ? undefined : (input) => {
    const out = matcher(input)
    return out === No || out === Unsure ? undefined : out
  }

const compile = (ast: SchemaAST.AST, direction: Direction): Matcher | undefined => {
  if (ast.encoding !== undefined) return undefined
  const base = compileBase(ast, direction)
  if (base === undefined || ast.checks === undefined) return base
  const checks = ast.checks
  // A value that fails a check is left to Schema (its error says which).
  return (input) => {
    const out = base(input)
    if (out === No || out === Unsure) return out
    return passes(checks, out, ast) ? out : Unsure
  }
}

const passes = (checks: ReadonlyArray<SchemaAST.Check<unknown>>, value: unknown, ast: SchemaAST.AST): boolean => {
  for (const check of checks) {
    if (check._tag === "FilterGroup" ? !passes(check.checks, value, ast) : check.run(value, ast, {}) !== undefined) return false
  }
  return true
}

const compileBase = (ast: SchemaAST.AST, direction: Direction): Matcher | undefined => {
  switch (ast._tag) {
    case "String":
      return (input) => (typeof input === "string" ? input : No)
    case "Boolean":
      return (input) => (typeof input === "boolean" ? input : No)
    case "Null":
      return (input) => (input === null ? input : No)
    case "Number":
      // The JSON form of a non-finite number is one of these strings.
      return direction === "decode"
        ? (input) =>
          typeof input === "number" ? (Number.isFinite(input) ? input : Unsure) : typeof input === "string" && nonFinite.has(input) ? Unsure : No
        : (input) => (typeof input === "number" ? (Number.isFinite(input) ? input : Unsure) : No)
    case "Literal": {
      const literal = ast.literal
      if (typeof literal === "bigint" || (typeof literal === "number" && !Number.isFinite(literal))) return undefined
      return (input) => (input === literal ? input : No)
    }
    case "Undefined": {
      // Stored as null: where it may be meant (null decoding, undefined
      // encoding), Schema decides, since more than one member may take it.
      const stands = direction === "decode" ? null : undefined
      return (input) => (input === stands ? Unsure : No)
    }
    case "Union": {
      if (ast.options !== undefined || ast.encodingChecks !== undefined) return undefined
      // Schema takes the first member that succeeds. Each member here
      // answers No only where Schema's member fails too, so the first one
      // that does not say No is that member, or one only Schema can judge.
      const members: Array<Matcher> = []
      for (const type of ast.types) {
        const member = compile(type, direction)
        if (member === undefined) return undefined
        members.push(member)
      }
      return (input) => {
        for (const member of members) {
          const out = member(input)
          if (out !== No) return out
        }
        return No
      }
    }
    case "Arrays": {
      if (ast.elements.length > 0 || ast.rest.length !== 1 || ast.encodingChecks !== undefined) return undefined
      const item = compile(ast.rest[0]!, direction)
      if (item === undefined) return undefined
      return (input) => {
        if (!Array.isArray(input)) return No
        const out = new Array<unknown>(input.length)
        for (let i = 0; i < input.length; i++) {
          const value = item(input[i])
          if (value === No || value === Unsure) return value
          out[i] = value
        }
        return out
      }
    }
    case "Objects": {
      // An empty struct is left to Schema: its candidates in a union include arrays.
      if (ast.propertySignatures.length === 0 || ast.indexSignatures.length > 0 || ast.encodingChecks !== undefined) return undefined
      const properties: Array<{ readonly name: string; readonly optional: boolean; readonly matcher: Matcher }> = []
      for (const property of ast.propertySignatures) {
        // Symbol keys never come from JSON; "__proto__" needs a defined property.
        if (typeof property.name !== "string" || property.name === "__proto__") return undefined
        const matcher = compile(property.type, direction)
        if (matcher === undefined) return undefined
        properties.push({ name: property.name, optional: property.type.context?.isOptional === true, matcher })
      }
      return (input) => {
        if (typeof input !== "object" || input === null || Array.isArray(input)) return No
        const record = input as Record<string, unknown>
        const out: Record<string, unknown> = {}
        let unsure = false
        for (const property of properties) {
          // As Schema looks for a key (inherited ones count).
          if (!(property.name in record)) {
            if (property.optional) continue
            return No
          }
          const value = property.matcher(record[property.name])
          if (value === No) return No
          if (value === Unsure) unsure = true
          else out[property.name] = value
        }
        return unsure ? Unsure : out
      }
    }
    default:
      return undefined
  }
}
