/**
 * The history checker: what clients did against a cluster and what every node holds at the end,
 * judged against what the store promises. Used by `dht verify` on real clusters (impl/cli/verify.ts)
 * and by properties; pure TypeScript (no node:* import, no clock), so a simulator can use it too.
 *
 * Input: every operation with its client, key, kind, value, invocation and completion times (one
 * clock, the recorder's), outcome and read result; and, after heal and quiescence, the sibling
 * set each node returns for each key. Values must be unique per write (the workload guarantees
 * it), so a value names the write that wrote it.
 *
 * Outcomes: `ok` (acknowledged), `failed` (definitely did not happen: the server said so before
 * doing anything, e.g. a validation error) and `indeterminate` (a timeout, a lost connection, a
 * quorum not met: it may have happened, now or later). An indeterminate operation never counts as
 * completed: its effect may land at any time after its invocation.
 *
 * The checks, each with counts and a list of violations naming the operations involved:
 *  - lost (KV-9, at most once / no lost write): every acknowledged write's value is in each
 *    node's final siblings, unless something that had not completed before the write was
 *    invoked (a concurrent, later or indeterminate write, or such a delete) explains its absence.
 *    An acknowledged write superseded by a stale re-execution of an earlier one is lost.
 *  - fromNowhere: every value read (during the run and at the end) was written by an invoked,
 *    not definitely failed, write of that key, invoked before the read completed.
 *  - convergence: every node returns the same final siblings for a key.
 *  - sessions: read-your-writes and monotonic reads per client; stale reads are counted, and
 *    are violations only where the mode promises them (`Promises`). A read pipelined on one
 *    connection right after another operation (`after`, CONN-1: it starts only once that one
 *    has its result) is judged from its effective start, the later of its invocation and the
 *    answer to the operation it was pipelined after; an update (or read) of that pipeline
 *    answered exactly then counts as done before it. So a pipelined `SET k v; GET k` that reads
 *    anything older than v is a read-your-writes violation where that is promised. An
 *    indeterminate predecessor (perhaps the client giving up, not the server's result) gives
 *    no such bound: the read is judged from its invocation.
 *  - resurrection: after an acknowledged delete, no read that began after it completed returns
 *    a value whose write completed before the delete was invoked (for a delete with a context:
 *    before the read that returned its context was invoked).
 *  - superseded: a value named in the context of an acknowledged causal write or delete (which
 *    therefore superseded it) is never in a final read, and with strict quorums never returned
 *    by a read that began after that write completed (CAUSAL-3 on real nodes).
 *
 * Time rule used throughout: x "had not completed before" y was invoked when x is not failed and
 * is either indeterminate or acknowledged at or after y's invocation. Only such x can supersede y
 * (a write supersedes only what it could have seen).
 */

export type Kind = "write" | "put" | "delete" | "read"
export type Outcome = "ok" | "failed" | "indeterminate"

export interface Op {
  /** Unique within the history. */
  readonly id: number
  readonly client: string
  readonly key: string
  /**
   * write: a plain SET (supersedes what its read quorum saw); put: DHT.PUT, with or without a
   * context; delete: DEL or DHT.DEL; read: GET or DHT.GET.
   */
  readonly kind: Kind
  /** write/put: the value written, unique in the history. */
  readonly value?: string | undefined
  /** put/delete through the causal API: the sibling values the context was read with. */
  readonly context?: ReadonlyArray<string> | undefined
  /**
   * put/delete with a context: when the read that returned the context was invoked. Such a
   * write supersedes only what its context covered, so it is "after" only what completed before
   * that read began (a plain write reads when it is invoked).
   */
  readonly contextReadAt?: number | undefined
  readonly invokedAt: number
  /** When the answer (or the client's timeout) came; undefined if it never did. */
  readonly completedAt?: number | undefined
  readonly outcome: Outcome
  /** read, ok: the live values returned (a plain GET: [] for nil, [v] otherwise). */
  readonly values?: ReadonlyArray<string> | undefined
  /** The node the operation was sent to (for reports). */
  readonly node?: string | undefined
  /** The error text of a failed or indeterminate operation (for reports). */
  readonly error?: string | undefined
  /**
   * Sent on the same connection right after op `after`, before that op's answer (pipelined);
   * by CONN-1 it starts only once `after` has its result (when both are on the same key).
   */
  readonly after?: number | undefined
}

/** One node's answer for one key after heal and quiescence. */
export interface FinalRead {
  readonly node: string
  readonly key: string
  /** The live sibling values; undefined if the node could not be read. */
  readonly values?: ReadonlyArray<string> | undefined
  readonly error?: string | undefined
}

export interface History {
  readonly ops: ReadonlyArray<Op>
  readonly final: ReadonlyArray<FinalRead>
}

/** What the mode promises beyond KV-9, values from nowhere and convergence. */
export interface Promises {
  readonly readYourWrites: boolean
  readonly monotonicReads: boolean
  readonly noResurrection: boolean
}

/** Strict quorums (CP, R + W > N): a read sees every write acknowledged before it began. */
export const strictPromises: Promises = {
  readYourWrites: true,
  monotonicReads: true,
  noResurrection: true,
}

/**
 * Sloppy quorums (AP): the substitutes that acknowledged a write need not be in the next read's
 * quorum, and a delete whose read quorum missed a value leaves it as a sibling of the tombstone.
 * Stale reads and such resurrections are counted, not violations.
 */
export const sloppyPromises: Promises = {
  readYourWrites: false,
  monotonicReads: false,
  noResurrection: false,
}

export type CheckName =
  | "lost"
  | "fromNowhere"
  | "convergence"
  | "sessions"
  | "resurrection"
  | "superseded"

export interface Violation {
  readonly check: CheckName
  readonly key: string
  readonly message: string
  /** Ids of the operations involved, the main one first. */
  readonly ops: ReadonlyArray<number>
  readonly nodes?: ReadonlyArray<string> | undefined
}

export interface CheckResult {
  readonly name: CheckName
  /** How many things were checked (writes, values, keys, reads). */
  readonly checked: number
  /** sessions: of those, reads pipelined after an operation of theirs on the key (CONN-1). */
  readonly pipelined?: { readonly checked: number; readonly found: number } | undefined
  /** How many failed the check, promised or not. */
  readonly found: number
  /** How many of those are violations (the mode promises what they break). */
  readonly violated: number
  /** Findings that are violations (the check is promised); at most `maxListed` are listed. */
  readonly violations: ReadonlyArray<Violation>
  /** Findings the mode does not promise (counted, not violations); a few, for the report. */
  readonly notPromised: ReadonlyArray<Violation>
}

export interface Counts {
  readonly ops: number
  readonly writes: number
  readonly reads: number
  readonly acknowledged: number
  readonly failed: number
  readonly indeterminate: number
  readonly keys: number
  readonly lost: number
  readonly fromNowhere: number
  readonly diverged: number
  readonly stale: number
  readonly resurrected: number
  readonly superseded: number
}

export interface Report {
  readonly ok: boolean
  readonly counts: Counts
  readonly checks: Readonly<Record<CheckName, CheckResult>>
  /** Every violation of every promised check (each check's list is bounded). */
  readonly violations: ReadonlyArray<Violation>
  /** Problems with the history itself (duplicate values or ids): the verdict cannot be trusted. */
  readonly malformed: ReadonlyArray<string>
}

export interface Options {
  readonly promises?: Promises
  /** Violations kept per check (the counts are always complete). */
  readonly maxListed?: number
}

// ---------------------------------------------------------------------------------------------
// Indexes

const isWrite = (op: Op): boolean => op.kind === "write" || op.kind === "put"
const isUpdate = (op: Op): boolean => isWrite(op) || op.kind === "delete"

/** x had not completed before `t` (x may take effect at or after t). */
const openAt = (x: Op, t: number): boolean =>
  x.outcome !== "failed" &&
  (x.outcome === "indeterminate" || x.completedAt === undefined || x.completedAt >= t)

/** x was acknowledged before `t`. */
const doneBefore = (x: Op, t: number): boolean =>
  x.outcome === "ok" && x.completedAt !== undefined && x.completedAt < t

class Index {
  readonly byId = new Map<number, Op>()
  readonly byValue = new Map<string, Op>()
  readonly byKey = new Map<string, Array<Op>>()
  readonly finalByKey = new Map<string, Array<FinalRead>>()
  readonly malformed: Array<string> = []
  /** Per key: the deletes that never completed (may land any time) exist. */
  private readonly openDelete = new Map<string, boolean>()
  /** Per key: the latest completion time of an acknowledged delete. */
  private readonly lastDeleteDone = new Map<string, number>()

  constructor(history: History) {
    const ids = new Set<number>()
    for (const op of history.ops) {
      if (ids.has(op.id)) this.malformed.push(`operation id ${op.id} appears twice`)
      ids.add(op.id)
      this.byId.set(op.id, op)
      let list = this.byKey.get(op.key)
      if (list === undefined) {
        list = []
        this.byKey.set(op.key, list)
      }
      list.push(op)
      if (isWrite(op)) {
        if (op.value === undefined) {
          this.malformed.push(`write #${op.id} of ${op.key} has no value`)
          continue
        }
        const other = this.byValue.get(op.value)
        if (other !== undefined) {
          this.malformed.push(`value ${show(op.value)} is written by #${other.id} and #${op.id}`)
        } else this.byValue.set(op.value, op)
      }
      if (op.kind === "delete" && op.outcome !== "failed") {
        if (op.outcome === "indeterminate" || op.completedAt === undefined) {
          this.openDelete.set(op.key, true)
        } else {
          this.lastDeleteDone.set(
            op.key,
            Math.max(this.lastDeleteDone.get(op.key) ?? Number.NEGATIVE_INFINITY, op.completedAt),
          )
        }
      }
    }
    for (const f of history.final) {
      let list = this.finalByKey.get(f.key)
      if (list === undefined) {
        list = []
        this.finalByKey.set(f.key, list)
      }
      list.push(f)
    }
  }

  /** Some delete of `key` had not completed before `t`. */
  deleteOpenAt(key: string, t: number): boolean {
    return (
      this.openDelete.get(key) === true ||
      (this.lastDeleteDone.get(key) ?? Number.NEGATIVE_INFINITY) >= t
    )
  }

  /**
   * Does a state whose live values are `values` account for update `u` of `key`: either it
   * holds u's value, or something that had not completed before u was invoked (and so may have
   * superseded it) is there, or may have deleted it?
   */
  admits(values: ReadonlyArray<string>, u: Op): boolean {
    if (u.value !== undefined && values.includes(u.value)) return true
    // A delete with a context covers only what completed before its context was read: a write
    // still open then may stand beside its tombstone (as the resurrection check judges it).
    const since = u.kind === "delete" ? (coversBefore(u) ?? u.invokedAt) : u.invokedAt
    for (const v of values) {
      const w = this.byValue.get(v)
      if (w !== undefined && w !== u && openAt(w, since)) return true
    }
    if (u.kind === "delete") return values.length === 0
    // A delete that had not completed before u was invoked may have removed u's value. Its
    // tombstone can hide beside older live siblings (AP: a delete whose read quorum missed a
    // value), so the state need not be empty.
    return this.deleteOpenAt(u.key, u.invokedAt)
  }
}

const show = (v: string): string => JSON.stringify(v.length > 40 ? `${v.slice(0, 37)}...` : v)

const describeOp = (op: Op): string => {
  const what =
    op.kind === "read"
      ? "read"
      : op.kind === "delete"
        ? "delete"
        : `${op.kind} ${show(op.value ?? "?")}`
  const at = op.node === undefined ? "" : ` at ${op.node}`
  const end =
    op.completedAt === undefined ? "never answered" : `answered ${op.outcome} at ${op.completedAt}`
  const piped = op.after === undefined ? "" : `, pipelined after #${op.after}`
  return `#${op.id} ${what} by ${op.client}${at} (invoked ${op.invokedAt}${piped}, ${end})`
}

const showSet = (values: ReadonlyArray<string> | undefined): string =>
  values === undefined ? "unreadable" : `[${values.map(show).join(", ")}]`

/** A bounded list: keep the first `max`, count them all. */
class Findings {
  readonly listed: Array<Violation> = []
  found = 0
  constructor(private readonly max: number) {}
  add(v: Violation): void {
    this.found++
    if (this.listed.length < this.max) this.listed.push(v)
  }
}

const result = (
  name: CheckName,
  checked: number,
  findings: Findings,
  promised: boolean,
): CheckResult => ({
  name,
  checked,
  found: findings.found,
  violated: promised ? findings.found : 0,
  violations: promised ? findings.listed : [],
  notPromised: promised ? [] : findings.listed,
})

// ---------------------------------------------------------------------------------------------
// The checks

/**
 * KV-9: every acknowledged write survives in every node's final siblings, or something that had
 * not completed before it was invoked explains its absence.
 */
export const checkLost = (history: History, options: Options = {}): CheckResult =>
  lost(new Index(history), options.maxListed ?? 50)

const lost = (ix: Index, max: number): CheckResult => {
  const findings = new Findings(max)
  let checked = 0
  for (const [key, ops] of ix.byKey) {
    const finals = (ix.finalByKey.get(key) ?? []).filter((f) => f.values !== undefined)
    if (finals.length === 0) continue
    for (const a of ops) {
      if (!isWrite(a) || a.outcome !== "ok" || a.value === undefined) continue
      checked++
      const missing = finals.filter((f) => !ix.admits(f.values!, a))
      if (missing.length === 0) continue
      const seen = missing[0]!.values!
      const holders = seen.map((v) => ix.byValue.get(v)).filter((w) => w !== undefined)
      findings.add({
        check: "lost",
        key,
        ops: [a.id, ...holders.map((w) => w.id)],
        nodes: missing.map((f) => f.node),
        message:
          `lost write: ${describeOp(a)} is not among the final siblings of ${key} at ` +
          `${missing.map((f) => f.node).join(", ")}, which hold ${showSet(seen)}` +
          (holders.length === 0
            ? " and no delete that was not already done when it was invoked"
            : `, written only by writes done before it was invoked: ${holders.map(describeOp).join("; ")}`),
      })
    }
  }
  return result("lost", checked, findings, true)
}

/** Every value read was written by an invoked, not definitely failed, write of that key. */
export const checkFromNowhere = (history: History, options: Options = {}): CheckResult =>
  fromNowhere(new Index(history), options.maxListed ?? 50)

const fromNowhere = (ix: Index, max: number): CheckResult => {
  const findings = new Findings(max)
  let checked = 0
  const judge = (
    key: string,
    value: string,
    readCompletedAt: number | undefined,
    where: string,
    ids: ReadonlyArray<number>,
    nodes?: ReadonlyArray<string>,
  ): void => {
    checked++
    const w = ix.byValue.get(value)
    let why: string | undefined
    if (w === undefined) why = "no operation wrote it"
    else if (w.key !== key) why = `it was written to another key, ${w.key}, by ${describeOp(w)}`
    else if (w.outcome === "failed")
      why = `its write definitely failed: ${describeOp(w)}${w.error ? ` (${w.error})` : ""}`
    else if (readCompletedAt !== undefined && w.invokedAt > readCompletedAt)
      why = `its write was invoked only after the read completed: ${describeOp(w)}`
    if (why === undefined) return
    findings.add({
      check: "fromNowhere",
      key,
      ops: w === undefined ? ids : [...ids, w.id],
      nodes,
      message: `value from nowhere: ${where} returned ${show(value)} for ${key}; ${why}`,
    })
  }
  for (const [key, ops] of ix.byKey) {
    for (const r of ops) {
      if (r.kind !== "read" || r.outcome !== "ok") continue
      for (const v of r.values ?? []) judge(key, v, r.completedAt, describeOp(r), [r.id])
    }
  }
  for (const [key, finals] of ix.finalByKey) {
    for (const f of finals) {
      for (const v of f.values ?? [])
        judge(key, v, undefined, `the final read at ${f.node}`, [], [f.node])
    }
  }
  return result("fromNowhere", checked, findings, true)
}

/** After heal and quiescence, every node returns the same siblings for a key. */
export const checkConvergence = (history: History, options: Options = {}): CheckResult =>
  convergence(new Index(history), options.maxListed ?? 50)

const convergence = (ix: Index, max: number): CheckResult => {
  const findings = new Findings(max)
  let checked = 0
  for (const [key, finals] of ix.finalByKey) {
    checked++
    const unreadable = finals.filter((f) => f.values === undefined)
    const sets = new Map<string, Array<string>>()
    for (const f of finals) {
      if (f.values === undefined) continue
      const canonical = JSON.stringify([...new Set(f.values)].sort())
      const nodes = sets.get(canonical) ?? []
      nodes.push(f.node)
      sets.set(canonical, nodes)
    }
    if (sets.size <= 1 && unreadable.length === 0) continue
    const parts = [...sets.entries()].map(
      ([canonical, nodes]) =>
        `${nodes.join(",")}: ${showSet(JSON.parse(canonical) as Array<string>)}`,
    )
    for (const f of unreadable) parts.push(`${f.node}: unreadable (${f.error ?? "no answer"})`)
    const ids = new Set<number>()
    for (const canonical of sets.keys()) {
      for (const v of JSON.parse(canonical) as Array<string>) {
        const w = ix.byValue.get(v)
        if (w !== undefined) ids.add(w.id)
      }
    }
    findings.add({
      check: "convergence",
      key,
      ops: [...ids],
      nodes: finals.map((f) => f.node),
      message: `diverged: the nodes' final siblings of ${key} differ: ${parts.join("; ")}`,
    })
  }
  return result("convergence", checked, findings, true)
}

/**
 * Read-your-writes and monotonic reads per client session. A read is stale if it does not
 * account for the client's last acknowledged update of the key (read-your-writes), or for an
 * acknowledged write an earlier read of the same client returned, once that write was done
 * (monotonic reads; a value from a write still in flight may vanish again legitimately).
 * "Last" and "earlier" are judged at the read's effective start (`pipelineOf`).
 */
export const checkSessions = (history: History, options: Options = {}): CheckResult =>
  sessions(new Index(history), options.promises ?? strictPromises, options.maxListed ?? 50)

/** Chains of `after` longer than this are cut (a malformed history cannot loop). */
const PIPELINE_MAX = 1000

/**
 * A read's place in its pipeline (CONN-1): its effective start, the later of its invocation and
 * the answer to the operation it was pipelined after (an indeterminate predecessor gives no
 * bound: its completion may be the client giving up), and the operations before it in the same
 * pipeline on the same key, nearest first, each of which had its result before the read began.
 */
const pipelineOf = (ix: Index, r: Op): { start: number; before: Array<Op> } => {
  const before: Array<Op> = []
  let start = r.invokedAt
  let p = r.after === undefined ? undefined : ix.byId.get(r.after)
  if (
    p !== undefined &&
    p.key === r.key &&
    p.client === r.client &&
    p.outcome !== "indeterminate" &&
    p.completedAt !== undefined
  ) {
    start = Math.max(start, p.completedAt)
  }
  while (
    p !== undefined &&
    p.key === r.key &&
    p.client === r.client &&
    before.length < PIPELINE_MAX
  ) {
    before.push(p)
    p = p.after === undefined ? undefined : ix.byId.get(p.after)
  }
  return { start, before }
}

const sessions = (ix: Index, promises: Promises, max: number): CheckResult => {
  const promised = new Findings(max)
  const unpromised = new Findings(max)
  let checked = 0
  let pipelinedChecked = 0
  let pipelinedFound = 0
  for (const [key, ops] of ix.byKey) {
    const byClient = new Map<string, Array<Op>>()
    for (const op of ops) {
      const list = byClient.get(op.client) ?? []
      list.push(op)
      byClient.set(op.client, list)
    }
    for (const own of byClient.values()) {
      const updates = own
        .filter((u) => isUpdate(u) && u.outcome === "ok" && u.completedAt !== undefined)
        .sort((x, y) => x.completedAt! - y.completedAt!)
      const reads = own
        .filter((r) => r.kind === "read" && r.outcome === "ok" && r.completedAt !== undefined)
        .map((r) => ({ r, ...pipelineOf(ix, r) }))
        .sort((x, y) => x.start - y.start)
      const byCompletion = reads.map((x) => x.r).sort((x, y) => x.completedAt! - y.completedAt!)
      let u = 0
      let lastOwnBefore: Op | undefined
      let p = 0
      let previousBefore: Op | undefined
      for (const { r, start, before } of reads) {
        checked++
        if (r.after !== undefined) pipelinedChecked++
        while (u < updates.length && updates[u]!.completedAt! < start) lastOwnBefore = updates[u++]
        while (p < byCompletion.length && byCompletion[p]!.completedAt! < start) {
          previousBefore = byCompletion[p++]
        }
        // An operation of the same pipeline answered exactly at the start (the one the read was
        // pipelined after, or one answered in the same batch) is done before the read too.
        const atStart = before.filter((x) => x.outcome === "ok" && x.completedAt === start)
        const lastOwn = atStart.find(isUpdate) ?? lastOwnBefore
        const previous = atStart.find((x) => x.kind === "read") ?? previousBefore
        const done = (w: Op): boolean => doneBefore(w, start) || atStart.includes(w)
        const values = r.values ?? []
        let finding: Violation | undefined
        if (lastOwn !== undefined && !ix.admits(values, lastOwn)) {
          finding = {
            check: "sessions",
            key,
            ops: [r.id, lastOwn.id],
            message:
              `stale read (read-your-writes): ${describeOp(r)} returned ${showSet(values)}, ` +
              `not the client's own earlier ${describeOp(lastOwn)} or anything newer`,
          }
        } else if (previous !== undefined) {
          for (const v of previous.values ?? []) {
            const w = ix.byValue.get(v)
            if (w === undefined || !done(w) || ix.admits(values, w)) continue
            finding = {
              check: "sessions",
              key,
              ops: [r.id, previous.id, w.id],
              message:
                `stale read (monotonic reads): ${describeOp(r)} returned ${showSet(values)} ` +
                `after the same client's ${describeOp(previous)} returned ${show(v)} of ${describeOp(w)}`,
            }
            break
          }
        }
        if (finding === undefined) continue
        if (r.after !== undefined) pipelinedFound++
        const isRyw = finding.message.includes("read-your-writes")
        const isPromised = isRyw ? promises.readYourWrites : promises.monotonicReads
        ;(isPromised ? promised : unpromised).add(finding)
      }
    }
  }
  return {
    name: "sessions",
    checked,
    pipelined: { checked: pipelinedChecked, found: pipelinedFound },
    found: promised.found + unpromised.found,
    violated: promised.found,
    violations: promised.listed,
    notPromised: unpromised.listed,
  }
}

/**
 * No resurrection: after an acknowledged delete, no read that began after it completed (final
 * reads included) returns a value whose write completed before the delete was invoked.
 */
export const checkResurrection = (history: History, options: Options = {}): CheckResult =>
  resurrection(new Index(history), options.promises ?? strictPromises, options.maxListed ?? 50)

/** The time before which a delete's effect covers every completed write (see contextReadAt). */
const coversBefore = (d: Op): number | undefined =>
  d.context === undefined ? d.invokedAt : d.contextReadAt

const resurrection = (ix: Index, promises: Promises, max: number): CheckResult => {
  const findings = new Findings(max)
  let checked = 0
  for (const [key, ops] of ix.byKey) {
    const deletes = ops
      .filter(
        (d) =>
          d.kind === "delete" &&
          d.outcome === "ok" &&
          d.completedAt !== undefined &&
          coversBefore(d) !== undefined,
      )
      .sort((x, y) => x.completedAt! - y.completedAt!)
    if (deletes.length === 0) continue
    // For a read invoked at t: of the deletes done before t, the one covering the most matters
    // (a value written before it covers is one written before some acknowledged delete).
    const widest: Array<Op> = []
    for (const d of deletes) {
      const prev = widest[widest.length - 1]
      widest.push(prev !== undefined && coversBefore(prev)! > coversBefore(d)! ? prev : d)
    }
    const deleteBefore = (t: number): Op | undefined => {
      let lo = 0
      let hi = deletes.length
      while (lo < hi) {
        const mid = (lo + hi) >> 1
        if (deletes[mid]!.completedAt! < t) lo = mid + 1
        else hi = mid
      }
      return lo === 0 ? undefined : widest[lo - 1]
    }
    const judge = (
      values: ReadonlyArray<string>,
      d: Op,
      where: string,
      ids: Array<number>,
      nodes?: Array<string>,
    ) => {
      checked++
      for (const v of values) {
        const w = ix.byValue.get(v)
        if (w === undefined || w.key !== key || !doneBefore(w, coversBefore(d)!)) continue
        findings.add({
          check: "resurrection",
          key,
          ops: [...ids, d.id, w.id],
          nodes,
          message:
            `resurrected: ${where} returned ${show(v)} of ${describeOp(w)}, after ` +
            `${describeOp(d)} had completed` +
            (d.context === undefined ? "" : ` (its context was read at ${d.contextReadAt})`),
        })
        return
      }
    }
    for (const r of ops) {
      if (r.kind !== "read" || r.outcome !== "ok") continue
      const d = deleteBefore(r.invokedAt)
      if (d !== undefined) judge(r.values ?? [], d, describeOp(r), [r.id])
    }
    const last = deleteBefore(Number.POSITIVE_INFINITY)!
    for (const f of ix.finalByKey.get(key) ?? []) {
      if (f.values !== undefined) judge(f.values, last, `the final read at ${f.node}`, [], [f.node])
    }
  }
  return result("resurrection", checked, findings, promises.noResurrection)
}

/**
 * A value in the context of an acknowledged causal write or delete was superseded by it: it is
 * never in a final read (any mode: after recovery), and with strict quorums (`noResurrection`)
 * no read that began after the superseding write completed returns it.
 */
export const checkSuperseded = (history: History, options: Options = {}): CheckResult =>
  superseded(new Index(history), options.promises ?? strictPromises, options.maxListed ?? 50)

const superseded = (ix: Index, promises: Promises, max: number): CheckResult => {
  const always = new Findings(max)
  const strictOnly = new Findings(max)
  let checked = 0
  for (const [key, ops] of ix.byKey) {
    /** Superseded value -> the first acknowledged write or delete that superseded it. */
    const by = new Map<string, Op>()
    for (const s of ops) {
      if (s.context === undefined || s.outcome !== "ok" || s.completedAt === undefined) continue
      for (const v of s.context) {
        const known = by.get(v)
        if (known === undefined || known.completedAt! > s.completedAt) by.set(v, s)
      }
    }
    if (by.size === 0) continue
    for (const r of ops) {
      if (r.kind !== "read" || r.outcome !== "ok") continue
      checked++
      for (const v of r.values ?? []) {
        const s = by.get(v)
        if (s === undefined || !(s.completedAt! < r.invokedAt)) continue
        strictOnly.add({
          check: "superseded",
          key,
          ops: [r.id, s.id],
          message: `superseded value returned: ${describeOp(r)} returned ${show(v)}, which ${describeOp(s)} had superseded (it was in its context)`,
        })
        break
      }
    }
    for (const f of ix.finalByKey.get(key) ?? []) {
      checked++
      for (const v of f.values ?? []) {
        const s = by.get(v)
        if (s === undefined) continue
        always.add({
          check: "superseded",
          key,
          ops: [s.id],
          nodes: [f.node],
          message: `superseded value in the final read at ${f.node}: ${show(v)} of ${key}, which ${describeOp(s)} had superseded (it was in its context)`,
        })
        break
      }
    }
  }
  const promisedStrict = promises.noResurrection
  const violations = [...always.listed, ...(promisedStrict ? strictOnly.listed : [])].slice(0, max)
  return {
    name: "superseded",
    checked,
    found: always.found + strictOnly.found,
    violated: always.found + (promisedStrict ? strictOnly.found : 0),
    violations,
    notPromised: promisedStrict ? [] : strictOnly.listed,
  }
}

// ---------------------------------------------------------------------------------------------
// Everything

/** Run every check; `ok` when no promised check found anything and the history is well formed. */
export const check = (history: History, options: Options = {}): Report => {
  const ix = new Index(history)
  const max = options.maxListed ?? 50
  const promises = options.promises ?? strictPromises
  const checks = {
    lost: lost(ix, max),
    fromNowhere: fromNowhere(ix, max),
    convergence: convergence(ix, max),
    sessions: sessions(ix, promises, max),
    resurrection: resurrection(ix, promises, max),
    superseded: superseded(ix, promises, max),
  }
  let acknowledged = 0
  let failed = 0
  let indeterminate = 0
  let writes = 0
  let reads = 0
  for (const op of history.ops) {
    if (isUpdate(op)) writes++
    else reads++
    if (op.outcome === "ok" && isUpdate(op)) acknowledged++
    if (op.outcome === "failed") failed++
    if (op.outcome === "indeterminate") indeterminate++
  }
  const keys = new Set([...ix.byKey.keys(), ...ix.finalByKey.keys()])
  const all = Object.values(checks)
  return {
    ok: all.every((c) => c.violated === 0) && ix.malformed.length === 0,
    counts: {
      ops: history.ops.length,
      writes,
      reads,
      acknowledged,
      failed,
      indeterminate,
      keys: keys.size,
      lost: checks.lost.found,
      fromNowhere: checks.fromNowhere.found,
      diverged: checks.convergence.found,
      stale: checks.sessions.found,
      resurrected: checks.resurrection.found,
      superseded: checks.superseded.found,
    },
    checks,
    violations: all.flatMap((c) => c.violations),
    malformed: ix.malformed,
  }
}
