export const median = (xs: ReadonlyArray<number>): number => {
  const s = [...xs].filter((x) => Number.isFinite(x)).sort((a, b) => a - b)
  if (s.length === 0) return NaN
  const m = s.length >> 1
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2
}

/** nearest-rank percentile, p in [0, 100] */
export const percentile = (xs: ReadonlyArray<number>, p: number): number => {
  const s = [...xs].sort((a, b) => a - b)
  if (s.length === 0) return NaN
  const rank = Math.max(1, Math.ceil((p / 100) * s.length))
  return s[Math.min(rank, s.length) - 1]!
}

export const nowMs = (): number => Number(process.hrtime.bigint()) / 1e6
export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms))
export const round = (x: number, digits = 0) => {
  const f = 10 ** digits
  return Math.round(x * f) / f
}
