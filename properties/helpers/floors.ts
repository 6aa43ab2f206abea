/**
 * `npm run floors -- [--runs K] [--jobs J] [suite ...]`
 *
 * How close each coverage floor is to what the suites actually draw. A floor (assertFloors in
 * properties/helpers/fc.ts) fails a run that checked too little; one set too close to the
 * counts of ordinary seeds fails clean runs now and then, and a red CI lands nothing. This runs
 * each suite K times (default 5) with fresh random seeds and FLOORS_LOG set, then prints, per
 * floor, the smallest, median and largest count drawn, the margin (smallest / floor) and how
 * many standard deviations of the draws the mean lies above the floor (z). A floor is marked
 * `thin` when a draw came within 1.25 times of it, or when it is above half the smallest draw
 * and z is under 4 (a clean run would fail more often than about once in 30 000), with the
 * value to lower it to; a run that failed is counted. A floor met by construction (an example
 * or a fixed-seed batch that always holds the event) may show as thin: read the suite.
 *
 * Suites: the named ones, or every non-end-to-end suite that holds floors.
 */
import { spawn } from "node:child_process"
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import * as Progress from "../../impl/cli/progress.ts"

interface Entry {
  readonly file: string
  readonly test: string
  readonly call: number
  readonly key: string
  readonly floor: number
  readonly seen: number
}

const THIN = 1.25
const Z = 4

const parse = (argv: ReadonlyArray<string>) => {
  let runs = 5
  let jobs = 2
  const suites: Array<string> = []
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!
    if (a === "--runs") runs = Number(argv[++i])
    else if (a === "--jobs") jobs = Number(argv[++i])
    else suites.push(a)
  }
  if (!(runs >= 1 && jobs >= 1)) throw new Error("usage: floors [--runs K] [--jobs J] [suite ...]")
  return { runs, jobs, suites }
}

const defaultSuites = (): Array<string> =>
  readdirSync("properties")
    .filter((f) => f.endsWith(".test.ts") && !f.startsWith("e2e"))
    .map((f) => join("properties", f))
    .filter((f) => readFileSync(f, "utf8").includes("assertFloors("))
    .sort()

/** One run of one suite, its floors appended to `log`; resolves to its exit code. */
const runOnce = (suite: string, log: string): Promise<number> =>
  new Promise((resolve) => {
    const env: NodeJS.ProcessEnv = { ...process.env, FLOORS_LOG: log }
    delete env.FC_SEED
    delete env.FC_PATH
    const child = spawn(
      process.execPath,
      ["--import", "tsx", "--test", "--test-reporter=dot", suite],
      { env, stdio: "ignore" },
    )
    child.on("exit", (code) => resolve(code ?? 1))
  })

const main = async (): Promise<void> => {
  const { runs, jobs, suites: named } = parse(process.argv.slice(2))
  const suites = named.length > 0 ? named : defaultSuites()
  for (const s of suites) if (!existsSync(s)) throw new Error(`no such suite: ${s}`)
  const dir = mkdtempSync(join(tmpdir(), "dht-floors-"))
  const work = suites.flatMap((s) => Array.from({ length: runs }, (_, i) => ({ s, i })))
  const failures = new Map<string, number>()
  let done = 0
  const bar = Progress.start("floors", suites.length * runs)
  const worker = async (): Promise<void> => {
    for (let job = work.shift(); job !== undefined; job = work.shift()) {
      const code = await runOnce(job.s, join(dir, `${job.s.replace(/\W/g, "_")}.${job.i}.jsonl`))
      if (code !== 0) failures.set(job.s, (failures.get(job.s) ?? 0) + 1)
      bar.update(++done)
    }
  }
  await Promise.all(Array.from({ length: jobs }, worker))
  bar.finish()

  const byFloor = new Map<string, { e: Entry; seen: Array<number> }>()
  for (const f of readdirSync(dir)) {
    for (const line of readFileSync(join(dir, f), "utf8").split("\n")) {
      if (line === "") continue
      const e = JSON.parse(line) as Entry
      const id = `${e.file}\0${e.test}\0${e.call}\0${e.key}`
      const at = byFloor.get(id) ?? { e, seen: [] }
      at.seen.push(e.seen)
      byFloor.set(id, at)
    }
  }
  rmSync(dir, { recursive: true, force: true })

  const rows = [...byFloor.values()]
    .map(({ e, seen }) => {
      const s = [...seen].sort((a, b) => a - b)
      const margin = e.floor > 0 ? s[0]! / e.floor : Number.POSITIVE_INFINITY
      const mean = s.reduce((a, b) => a + b, 0) / s.length
      const sd = Math.sqrt(s.reduce((a, b) => a + (b - mean) ** 2, 0) / Math.max(1, s.length - 1))
      const z = sd > 0 ? (mean - e.floor) / sd : Number.POSITIVE_INFINITY
      // Every draw the same: a count the seed does not move (one per run, say); it is thin only
      // if it is under its floor.
      const fixed = s.length > 1 && sd === 0
      // Otherwise thin when a draw came within 1.25 times of it, or when it is above half the
      // smallest draw and under four standard deviations from the mean. Counts of rare events
      // are skewed to the right, so z alone errs low: a floor at half the smallest draw or less
      // is taken as safe whatever z says.
      const thin = fixed ? s[0]! < e.floor : margin < THIN || (s.length > 1 && z < Z && margin < 2)
      // What to lower a thin floor to: half the smallest draw, at least 1.
      const suggest = Math.max(1, Math.floor(s[0]! / 2))
      return { e, s, margin, z, thin, suggest }
    })
    .sort((a, b) => a.margin - b.margin)
  const short = (t: string) => (t.length > 48 ? `${t.slice(0, 45)}...` : t)
  console.log(
    `${"margin".padStart(7)} ${"z".padStart(6)} ${"floor".padStart(7)} ${"min".padStart(7)} ${"median".padStart(7)} ${"max".padStart(7)}  n  floor`,
  )
  for (const { e, s, margin, z, thin, suggest } of rows) {
    const mark = thin ? ` thin (suggest ${suggest})` : ""
    console.log(
      `${margin.toFixed(2).padStart(7)} ${(Number.isFinite(z) ? z.toFixed(1) : "-").padStart(6)} ${String(e.floor).padStart(7)} ${String(s[0]).padStart(7)} ${String(s[Math.floor(s.length / 2)]).padStart(7)} ${String(s.at(-1)).padStart(7)} ${String(s.length).padStart(2)}  ${e.file.replace(/^properties\//, "")} · ${short(e.test)}${e.call > 1 ? ` (batch ${e.call})` : ""} · ${e.key}${mark}`,
    )
  }
  for (const [s, n] of failures) console.log(`failed: ${s} in ${n} of ${runs} runs`)
  const thin = rows.filter((r) => r.thin).length
  console.log(
    `${rows.length} floors in ${suites.length} suites, ${runs} runs each: ${thin} thin (min < ${THIN} x floor, or z < ${Z} and min < 2 x floor), ${failures.size} suites failed a run`,
  )
  if (thin > 0 || failures.size > 0) process.exitCode = 1
}

void main()
