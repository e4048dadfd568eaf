import { describe, expect, it } from "@effect/vitest"
import { uuid } from "../src/internal/uuid.ts"

describe("uuid", () => {
  it("is a version 7 UUID carrying the current time in its first 48 bits", () => {
    const before = Date.now()
    const id = uuid()
    const after = Date.now()
    expect(id).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/)
    const millis = parseInt(id.slice(0, 8) + id.slice(9, 13), 16)
    expect(millis).toBeGreaterThanOrEqual(before)
    expect(millis).toBeLessThanOrEqual(after)
  })

  it("orders ids of different milliseconds by time, and never repeats", () => {
    const ids = new Set<string>()
    for (let i = 0; i < 10_000; i++) ids.add(uuid())
    expect(ids.size).toBe(10_000)
    const sorted = [...ids].map((id) => id.slice(0, 13))
    for (let i = 1; i < sorted.length; i++) expect(sorted[i]! >= sorted[i - 1]!).toBe(true)
  })
})
