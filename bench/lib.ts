/**
 * A tiny benchmark harness: runs an operation in timed batches and reports ops/s and latency
 * percentiles. Benchmarks print; they never assert on time.
 */
export interface Result {
  readonly name: string
  readonly ops: number
  readonly opsPerSec: number
  readonly p50Us: number
  readonly p99Us: number
  readonly maxUs: number
}

export const percentile = (sorted: ReadonlyArray<number>, p: number): number =>
  sorted.length === 0 ? 0 : sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))]!

/** Time `op` one call at a time (for ops of about a microsecond or more). */
export const measure = (name: string, op: (i: number) => void, iterations: number): Result => {
  for (let i = 0; i < Math.min(1000, iterations); i++) op(i) // warm-up
  const samples = new Float64Array(iterations)
  const start = process.hrtime.bigint()
  for (let i = 0; i < iterations; i++) {
    const t0 = process.hrtime.bigint()
    op(i)
    samples[i] = Number(process.hrtime.bigint() - t0) / 1000
  }
  const totalSec = Number(process.hrtime.bigint() - start) / 1e9
  const sorted = [...samples].sort((a, b) => a - b)
  return {
    name,
    ops: iterations,
    opsPerSec: iterations / totalSec,
    p50Us: percentile(sorted, 0.5),
    p99Us: percentile(sorted, 0.99),
    maxUs: sorted[sorted.length - 1] ?? 0,
  }
}

export const printResults = (title: string, results: ReadonlyArray<Result>): void => {
  console.log(`\n${title}`)
  console.log(
    `${"benchmark".padEnd(44)} ${"ops/s".padStart(12)} ${"p50 µs".padStart(9)} ${"p99 µs".padStart(9)} ${"max µs".padStart(9)}`,
  )
  for (const r of results) {
    console.log(
      `${r.name.padEnd(44)} ${Math.round(r.opsPerSec).toLocaleString("en-US").padStart(12)} ${r.p50Us.toFixed(2).padStart(9)} ${r.p99Us.toFixed(2).padStart(9)} ${r.maxUs.toFixed(1).padStart(9)}`,
    )
  }
}

/** A numeric `--name value` flag of the benchmark's command line, or `fallback`. */
export const arg = (name: string, fallback: number): number => {
  const i = process.argv.indexOf(`--${name}`)
  return i >= 0 ? Number(process.argv[i + 1]) : fallback
}
