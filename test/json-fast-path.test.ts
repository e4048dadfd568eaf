/**
 * The fast paths of JSON decoding and encoding (src/internal/jsonFastPath.ts)
 * agree with Schema's JSON codec wherever they answer, and leave to it what
 * they cannot be sure of.
 */
import { assert, describe, it } from "@effect/vitest"
import { Exit, Schema, type SchemaAST } from "effect"
import { compileFastDecoder, compileFastEncoder } from "../src/internal/jsonFastPath.ts"

/** A small deterministic generator, so a failure can be replayed. */
const random = (seed: number) => () => {
  seed = (seed * 1103515245 + 12345) % 2147483648
  return seed / 2147483648
}

const Inner = Schema.Struct({ x: Schema.optionalKey(Schema.Number), y: Schema.optional(Schema.Boolean) })
/** Schemas the fast path covers. */
const covered = {
  bench: Schema.Struct({ i: Schema.optional(Schema.Number), t: Schema.optional(Schema.String) }),
  order: Schema.Struct({
    id: Schema.String,
    n: Schema.Number,
    ok: Schema.Boolean,
    tags: Schema.Array(Schema.String),
    kind: Schema.Literals(["a", "b", 1, true]),
    note: Schema.NullOr(Schema.String),
    inner: Inner,
    items: Schema.Array(Inner)
  }),
  checked: Schema.Struct({ name: Schema.NonEmptyString, n: Schema.Number.check(Schema.isInt()), i: Schema.optional(Schema.Finite) }),
  checkedStruct: Schema.Struct({ a: Schema.Number, b: Schema.Number }).check(Schema.makeFilter((s) => s.a < s.b)),
  numberOrString: Schema.Union([Schema.Number, Schema.String]),
  stringOrNumber: Schema.Union([Schema.String, Schema.Number]),
  nullOrUndefined: Schema.Union([Schema.Null, Schema.Undefined]),
  undefinedOrNull: Schema.Union([Schema.Undefined, Schema.Null]),
  optionalNullable: Schema.Struct({ v: Schema.optional(Schema.NullOr(Schema.Number)) }),
  literal: Schema.Literal("x"),
  numbers: Schema.Array(Schema.Number),
  nullable: Schema.NullOr(Schema.Struct({ a: Schema.String })),
  tagged: Schema.Union([Schema.Struct({ _tag: Schema.Literal("A") }), Schema.Struct({ _tag: Schema.Literal("B"), b: Schema.Number })]),
  // Both members take { a: 1, b: "x" }: the first one decides.
  overlapping: Schema.Union([Schema.Struct({ a: Schema.Number }), Schema.Struct({ a: Schema.Number, b: Schema.String })]),
  // Its tag has a constructor default, which decoding and encoding do not use.
  taggedStruct: Schema.TaggedStruct("A", { n: Schema.Number, t: Schema.optionalKey(Schema.String) })
}
/** Schemas it does not cover: transformations, declarations, records, tuples, empty structs, bigints, unknown values. */
const uncovered = {
  date: Schema.Struct({ at: Schema.Date }),
  numberFromString: Schema.Struct({ n: Schema.NumberFromString }),
  record: Schema.Record(Schema.String, Schema.Number),
  tuple: Schema.Tuple([Schema.String, Schema.Number]),
  empty: Schema.Struct({}),
  bigint: Schema.Struct({ b: Schema.BigInt }),
  unknown: Schema.Unknown
}

const keys = ["_tag", "i", "t", "id", "n", "ok", "tags", "kind", "note", "inner", "items", "x", "y", "name", "a", "b", "v", "toString", "extra"]
/** What a value in memory may hold and its JSON form may not: encoding meets them, decoding does not. */
const unencoded: ReadonlyArray<unknown> = [undefined, Number.NaN, Infinity, -Infinity]
const leaves: ReadonlyArray<unknown> = [
  0, -0, 1, 2, 1.5, -7, 2 ** 53, 1e300, "", "a", "b", "x", "A", "B", "NaN", "Infinity", "-Infinity", "1", true, false, null
]
/** A random JSON value, drawn mostly from the keys and leaves the schemas above use; with `more`, now and then a value JSON cannot hold. */
const jsonValue = (next: () => number, depth: number, more = false): unknown => {
  const r = next()
  if (more && r < 0.05) return unencoded[Math.floor(next() * unencoded.length)]
  if (depth > 3 || r < 0.45) return leaves[Math.floor(next() * leaves.length)]
  if (r < 0.6) return Array.from({ length: Math.floor(next() * 4) }, () => jsonValue(next, depth + 1, more))
  const out: Record<string, unknown> = {}
  for (let k = Math.floor(next() * 6); k > 0; k--) out[keys[Math.floor(next() * keys.length)]!] = jsonValue(next, depth + 1, more)
  return out
}
/** A value shaped like the schema's valid ones, with now and then a part out of place. */
const shaped = (next: () => number, more = false): Record<keyof typeof covered, () => unknown> => {
  const pick = <A>(xs: ReadonlyArray<A>) => xs[Math.floor(next() * xs.length)]!
  const maybe = (value: () => unknown) => (next() < 0.1 ? jsonValue(next, 2, more) : value())
  const inner = () => ({ ...(next() < 0.6 ? { x: maybe(() => pick([1, -0, 2.5])) } : {}), ...(next() < 0.4 ? { y: maybe(() => pick([true, false, null])) } : {}) })
  return {
    bench: () => ({ ...(next() < 0.8 ? { i: maybe(() => Math.floor(next() * 1000)) } : {}), ...(next() < 0.3 ? { t: maybe(() => "s") } : {}), ...(next() < 0.2 ? { extra: 1 } : {}) }),
    order: () => ({
      id: maybe(() => "o-1"),
      n: maybe(() => pick([1, 2.5, "NaN"])),
      ok: maybe(() => true),
      tags: maybe(() => ["a", "b"]),
      kind: maybe(() => pick(["a", "b", 1, true, "c"])),
      note: maybe(() => pick([null, "n"])),
      inner: maybe(inner),
      items: maybe(() => [inner(), inner()]),
      ...(next() < 0.3 ? { extra: [1] } : {})
    }),
    checked: () => ({ name: maybe(() => pick(["n", ""])), n: maybe(() => pick([1, 1.5])), ...(next() < 0.5 ? { i: maybe(() => pick([3, "Infinity", null])) } : {}) }),
    checkedStruct: () => ({ a: maybe(() => pick([1, 3])), b: maybe(() => 2) }),
    numberOrString: () => maybe(() => pick([1, "1", "NaN", "Infinity"])),
    stringOrNumber: () => maybe(() => pick([1, "1", "NaN", "-Infinity"])),
    nullOrUndefined: () => maybe(() => null),
    undefinedOrNull: () => maybe(() => null),
    optionalNullable: () => (next() < 0.3 ? {} : { v: maybe(() => pick([null, 1, "NaN"])) }),
    literal: () => maybe(() => pick(["x", "y"])),
    numbers: () => maybe(() => [1, 2, pick([3, "Infinity"])]),
    nullable: () => maybe(() => pick([null, { a: "a" }, { a: 1 }])),
    tagged: () => maybe(() => pick([{ _tag: "A", b: 1 }, { _tag: "B", b: 2 }, { _tag: "B" }, { _tag: "C" }])),
    overlapping: () => maybe(() => pick([{ a: 1, b: "x" }, { b: "x" }, { a: "1", b: "x" }])),
    taggedStruct: () => maybe(() => pick([{ _tag: "A", n: 1 }, { _tag: "A", n: 2, t: "s", extra: 1 }, { _tag: "B", n: 1 }, { n: 1 }]))
  }
}

/** Whether a value holds undefined or a non-finite number anywhere (what only Schema encodes). */
const holdsUnencoded = (value: unknown): boolean =>
  unencoded.includes(value) ||
  (typeof value === "object" && value !== null && Object.values(value).some(holdsUnencoded))
/** A value with its undefined and non-finite numbers spelled out. */
const show = (value: unknown) => JSON.stringify(value, (_, v) => (v === undefined ? "<undefined>" : typeof v === "number" && !Number.isFinite(v) ? `<${v}>` : v))

/**
 * For 3,000 inputs per covered schema: where the fast path answers, Schema's
 * JSON codec succeeds with the same value; where Schema succeeds and
 * `mustAnswer` holds, the fast path answers.
 */
const agreesWithSchema = (options: {
  readonly compileFast: (ast: SchemaAST.AST) => ((input: unknown) => unknown) | undefined
  readonly schemaParser: (codec: Schema.Codec<unknown, unknown>) => (input: unknown) => Exit.Exit<unknown, unknown>
  readonly input: (name: keyof typeof covered, n: number) => unknown
  readonly mustAnswer: (input: unknown) => boolean
}) => {
  for (const [name, schema] of Object.entries(covered) as Array<[keyof typeof covered, Schema.Codec<unknown, unknown>]>) {
    const fast = options.compileFast(schema.ast)!
    const parse = options.schemaParser(Schema.toCodecJson(schema))
    let valid = 0
    for (let n = 0; n < 3000; n++) {
      const input = options.input(name, n)
      const expected = parse(input)
      const got = fast(input)
      if (Exit.isSuccess(expected)) {
        valid++
        if (options.mustAnswer(input)) assert.isDefined(got, `${name}: no answer for ${show(input)}`)
      }
      if (got === undefined) continue
      assert.isTrue(Exit.isSuccess(expected), `${name}: answered for ${show(input)}, which Schema rejects`)
      if (Exit.isSuccess(expected)) {
        assert.isTrue(sameValue(got, expected.value), `${name}: ${show(input)} gave ${show(got)}, Schema ${show(expected.value)}`)
      }
    }
    assert.isAbove(valid, 200, name)
  }
}

/** Equal values with their keys in the same order. */
const sameValue = (a: unknown, b: unknown): boolean => {
  if (Object.is(a, b)) return true
  if (typeof a !== "object" || typeof b !== "object" || a === null || b === null) return false
  if (Array.isArray(a) !== Array.isArray(b)) return false
  const ka = Object.keys(a)
  const kb = Object.keys(b)
  return ka.length === kb.length && ka.every((k, i) => k === kb[i] && sameValue((a as any)[k], (b as any)[k]))
}

describe("the fast paths of JSON decoding and encoding", () => {
  it("is compiled for the schemas it covers and for no other", () => {
    for (const [name, schema] of Object.entries(covered)) {
      assert.isDefined(compileFastDecoder(schema.ast), name)
      assert.isDefined(compileFastEncoder(schema.ast), name)
    }
    for (const [name, schema] of Object.entries(uncovered)) {
      assert.isUndefined(compileFastDecoder(schema.ast), name)
      assert.isUndefined(compileFastEncoder(schema.ast), name)
    }
  })

  it("encodes as Schema's JSON codec does wherever it answers, and answers for every valid value without undefined or a non-finite number", () => {
    const next = random(13)
    const shapes = shaped(next, true)
    agreesWithSchema({
      compileFast: compileFastEncoder,
      schemaParser: (codec) => Schema.encodeUnknownExit(codec),
      // The value as a program holds it: undefined and non-finite numbers included.
      input: (name, n) => (n % 2 === 0 ? shapes[name]() : jsonValue(next, 0, true)),
      mustAnswer: (input) => !holdsUnencoded(input)
    })
  })

  it("decodes as Schema's JSON codec does wherever it answers, and answers for every valid value without null or a non-finite number's string", () => {
    const next = random(11)
    const shapes = shaped(next)
    agreesWithSchema({
      compileFast: compileFastDecoder,
      schemaParser: (codec) => Schema.decodeUnknownExit(codec),
      // The input is what the store hands back: parsed JSON.
      input: (name, n) => JSON.parse(JSON.stringify(n % 2 === 0 ? shapes[name]() : jsonValue(next, 0))),
      // Only null (maybe undefined's JSON form) and these strings need Schema.
      mustAnswer: (input) => !/null|"NaN"|"-?Infinity"/.test(JSON.stringify(input))
    })
  })

  it("leaves to Schema what only Schema can tell", () => {
    const fast = (schema: Schema.Codec<unknown, unknown>) => compileFastDecoder(schema.ast)!
    // The JSON forms of a non-finite number and of undefined.
    assert.isUndefined(fast(covered.bench)({ i: "NaN" }))
    assert.isUndefined(fast(covered.bench)({ i: null }))
    assert.isUndefined(fast(covered.numberOrString)("Infinity"))
    assert.isUndefined(fast(covered.undefinedOrNull)(null))
    // A check that fails (Schema gives the error).
    assert.isUndefined(fast(covered.checked)({ name: "", n: 1 }))
    assert.isUndefined(fast(covered.checkedStruct)({ a: 3, b: 2 }))
    // What it can tell.
    assert.deepStrictEqual(fast(covered.bench)({ i: 1, extra: true }), { i: 1 })
    assert.strictEqual(fast(covered.stringOrNumber)("Infinity"), "Infinity")
    assert.strictEqual(fast(covered.nullOrUndefined)(null), null)
    assert.deepStrictEqual(fast(covered.checkedStruct)({ a: 1, b: 2 }), { a: 1, b: 2 })
    assert.deepStrictEqual(fast(covered.overlapping)({ a: 1, b: "x" }), { a: 1 })
  })
})
