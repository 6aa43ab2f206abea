/**
 * fast-check parameters shared by every property suite.
 *  - Every array or structure with a declared maximum size is generated up to that maximum.
 *  - DHT_DEEP=1 multiplies every property's runs by 10 (`npm run test:deep`).
 *  - FC_SEED and FC_PATH replay one failing case: a failing property prints fast-check's report
 *    and then the command that replays just that property (its file, `--test-name-pattern` and
 *    the case's seed and path); command sequences also print a replayPath: add it as
 *    FC_REPLAY_PATH.
 */
import { appendFileSync } from "node:fs"
import fc from "fast-check"
import { running } from "./test.ts"

export const deep = process.env.DHT_DEEP === "1"

// Full-length schedules: an array (or a recursive structure) with a declared maximum is
// generated up to that maximum, not to fast-check's small default size (an `fc.array` with
// `maxLength: 120` otherwise stops near 10 + 2·minLength, whatever the maximum says). Set
// here, before any suite builds an arbitrary, so that it holds for every property.
fc.configureGlobal({ ...fc.readConfigureGlobal(), defaultSizeToMaxWhenMaxSpecified: true })

export const params = <T>(numRuns: number, extra: fc.Parameters<T> = {}): fc.Parameters<T> => {
  const seed = process.env.FC_SEED
  const path = process.env.FC_PATH
  return {
    numRuns: deep ? numRuns * 10 : numRuns,
    ...(seed !== undefined ? { seed: Number(seed) } : {}),
    ...(path !== undefined ? { path } : {}),
    verbose: 1,
    reporter: report,
    ...extra,
  }
}

const shellQuote = (text: string): string => `'${text.replace(/'/g, "'\\''")}'`
const regexQuote = (text: string): string => text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")

/** The command that replays one failing case of the running test, and only that test. */
export const replayCommand = (seed: number, path: string | undefined): string => {
  const name = running?.name
  const file = running?.file ?? "properties/<file>.test.ts"
  return [
    `FC_SEED=${seed}`,
    ...(path === undefined ? [] : [`FC_PATH=${shellQuote(path)}`]),
    "node --import tsx --test",
    ...(name === undefined ? [] : [`--test-name-pattern=${shellQuote(`^${regexQuote(name)}$`)}`]),
    file,
  ].join(" ")
}

/** fast-check's own report, then the command that replays this case of this property. */
const report = <T>(out: fc.RunDetails<T>): void => {
  if (!out.failed) return
  const text = fc.defaultReportMessage(out) ?? "property failed"
  throw new Error(
    `${text}\n\nReplay just this property:\n  ${replayCommand(out.seed, out.counterexamplePath ?? undefined)}\n`,
  )
}

/** Options for fc.commands: long sequences, and FC_REPLAY_PATH to replay a shrunk sequence. */
export const commandOptions = (
  maxCommands: number,
): { size: "+1"; maxCommands: number; replayPath?: string } => {
  const replayPath = process.env.FC_REPLAY_PATH
  return { size: "+1", maxCommands, ...(replayPath !== undefined ? { replayPath } : {}) }
}

/** Replaying one case (FC_SEED set): batch-level coverage assertions do not apply. */
export const replaying = process.env.FC_SEED !== undefined

/**
 * A first batch of a property from a fixed seed, for floors of events too rare or clustered to
 * hold on random draws alone: the seed is picked (and its counts stated where it is called) so
 * that the batch holds the events, which makes their floors certain on unchanged code while the
 * random batch that follows adds breadth. A change that makes such an event impossible still
 * fails the floor, whatever the random draw. Skipped on a one-case replay.
 */
export const assertFixedBatch = <Ts>(property: fc.IProperty<Ts>, runs: number, seed: number) => {
  if (!replaying) fc.assert(property, params(runs, { seed }))
}

/** How many batches of each test were held to floors so far in this process (FLOORS_LOG). */
const floorCalls = new Map<string, number>()

/**
 * Coverage floors of a property (no vacuous pass): each counter in `floors` must have reached
 * its floor over the whole run. Skipped on a one-case replay, where no batch-level count holds.
 * With FLOORS_LOG=<file>, every counter and its floor is also appended to that file as one JSON
 * line (`npm run floors` samples many runs this way to find floors too close to their draws).
 */
export const assertFloors = <K extends string>(
  seen: Readonly<Record<K, number>>,
  floors: Readonly<Partial<Record<K, number>>>,
): void => {
  if (replaying) return
  const log = process.env.FLOORS_LOG
  if (log !== undefined) {
    // The nth batch of this test in this run: one test may hold several batches to floors.
    const test = running?.name ?? ""
    const call = (floorCalls.get(test) ?? 0) + 1
    floorCalls.set(test, call)
    const lines = (Object.entries(floors) as Array<[K, number]>).map(([key, floor]) =>
      JSON.stringify({ file: running?.file, test, call, key, floor, seen: seen[key] }),
    )
    appendFileSync(log, `${lines.join("\n")}\n`)
  }
  for (const [k, floor] of Object.entries(floors) as Array<[K, number]>) {
    if (!(seen[k] >= floor)) {
      throw new Error(
        `coverage floor: ${k} = ${seen[k]} is below ${floor} (${JSON.stringify(seen)})`,
      )
    }
  }
}

/**
 * A generated schedule's declared maximum length; three times longer under DHT_LONG=1
 * (exploratory: at 3x, REBAL-1 and CHORD-7 find liveness problems still open, see
 * docs/verification.md).
 */
export const scheduleMax = (n: number): number => (process.env.DHT_LONG === "1" ? 3 * n : n)

/**
 * The lengths of the schedules one property actually ran (shrinking excluded: call `add` from
 * the property's body and `print` once after `fc.assert`), printed as a distribution against
 * the declared maximum, so that a schedule that never reaches its length shows.
 */
export class Lengths {
  private readonly seen: Array<number> = []
  constructor(
    readonly name: string,
    readonly declared: number,
  ) {}

  add(n: number): void {
    this.seen.push(n)
  }

  print(): void {
    const s = [...this.seen].sort((a, b) => a - b)
    if (s.length === 0) return
    const at = (q: number) => s[Math.min(s.length - 1, Math.floor(q * s.length))]
    console.log(
      `${this.name}: ${s.length} schedules, length min ${s[0]} / median ${at(0.5)} / p90 ${at(0.9)} / max ${s[s.length - 1]} of declared ${this.declared}`,
    )
  }
}
