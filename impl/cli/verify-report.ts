/**
 * What `dht verify` prints and keeps: fault phases with their availability, the verdict text,
 * and a one-page SVG timeline (faults per node, availability per phase, throughput).
 */
import type { Op, Promises, Report } from "../../spec/history.ts"
import type { FaultKind, NemesisEvent } from "./verify-nemesis.ts"

// ---------------------------------------------------------------------------------------------
// Phases and availability

export interface Phase {
  readonly from: number
  readonly to: number
  /** The faults in force ("healthy" if none). */
  readonly label: string
  readonly kinds: ReadonlyArray<FaultKind>
  readonly writes: Availability
  readonly reads: Availability
}

export interface Availability {
  ok: number
  total: number
}

const isWrite = (op: Op): boolean => op.kind !== "read"

/** Writes the server refuses by design (the workload's W 99): not an availability loss. */
const byDesign = (op: Op): boolean =>
  op.outcome === "failed" && /must be an integer/.test(op.error ?? "")

/** Split [0, end) at every fault start and end; count what succeeded in each piece. */
export const phases = (
  events: ReadonlyArray<NemesisEvent>,
  ops: ReadonlyArray<Op>,
  end: number,
): Array<Phase> => {
  const changes = events.filter((e) => e.phase !== "info" && e.at < end).sort((a, b) => a.at - b.at)
  const active = new Map<number, { kind: FaultKind; text: string }>()
  const out: Array<{ from: number; to: number; label: string; kinds: Array<FaultKind> }> = []
  let from = 0
  const close = (to: number) => {
    if (to <= from) return
    const faults = [...active.values()]
    out.push({
      from,
      to,
      label: faults.length === 0 ? "healthy" : faults.map((f) => f.text).join(" + "),
      kinds: faults.map((f) => f.kind),
    })
    from = to
  }
  for (const e of changes) {
    close(e.at)
    if (e.phase === "start") active.set(e.window, { kind: e.kind as FaultKind, text: e.text })
    else active.delete(e.window)
  }
  close(end)
  const result = out.map((p) => ({
    ...p,
    writes: { ok: 0, total: 0 },
    reads: { ok: 0, total: 0 },
  }))
  const sorted = [...ops].sort((a, b) => a.invokedAt - b.invokedAt)
  let i = 0
  for (const op of sorted) {
    while (i < result.length - 1 && op.invokedAt >= result[i]!.to) i++
    const phase = result[i]
    if (phase === undefined || op.invokedAt >= phase.to || byDesign(op)) continue
    const a = isWrite(op) ? phase.writes : phase.reads
    a.total++
    if (op.outcome === "ok") a.ok++
  }
  return result
}

/** Availability summed per fault kind ("healthy" for no fault; the first kind of overlaps). */
export const byKind = (
  ps: ReadonlyArray<Phase>,
): Array<{ kind: string; ms: number; writes: Availability; reads: Availability }> => {
  const sums = new Map<string, { ms: number; writes: Availability; reads: Availability }>()
  for (const p of ps) {
    const kind = p.kinds[0] ?? "healthy"
    const s = sums.get(kind) ?? { ms: 0, writes: { ok: 0, total: 0 }, reads: { ok: 0, total: 0 } }
    s.ms += p.to - p.from
    s.writes.ok += p.writes.ok
    s.writes.total += p.writes.total
    s.reads.ok += p.reads.ok
    s.reads.total += p.reads.total
    sums.set(kind, s)
  }
  return [...sums.entries()].map(([kind, s]) => ({ kind, ...s }))
}

/** Acknowledged operations per second in a stretch of time (a stalled cluster shows here). */
const rate = (k: { ms: number; writes: Availability; reads: Availability }): string =>
  k.ms <= 0 ? "-" : ((1000 * (k.writes.ok + k.reads.ok)) / k.ms).toFixed(0)

export const percent = (a: Availability): string =>
  a.total === 0 ? "-" : `${((100 * a.ok) / a.total).toFixed(1)}%`

const count = (n: number): string => n.toLocaleString("en-US")

// ---------------------------------------------------------------------------------------------
// The verdict

export interface RunInfo {
  readonly cluster: string
  readonly seed: number
  readonly workloadMs: number
  readonly clients: number
  readonly promises: Promises
  readonly promisesText: string
  readonly injected: ReadonlyMap<string, number>
  /** Per form of fault, e.g. "kill all" (shown when it says more than the kinds). */
  readonly forms: ReadonlyMap<string, number>
  readonly faultNotes: ReadonlyArray<string>
  readonly convergence: string
  readonly out: string
  readonly files: ReadonlyArray<string>
}

export const verdictText = (
  report: Report,
  info: RunInfo,
  ps: ReadonlyArray<Phase>,
  maxViolations = 10,
): string => {
  const c = report.counts
  const ch = report.checks
  const violated = Object.values(ch).filter((x) => x.violated > 0)
  const head = report.ok
    ? "dht verify: PASS — no violation"
    : `dht verify: FAIL — ${violated.map((x) => `${x.name} ${count(x.violated)}`).join(", ") || "malformed history"}`
  const faults =
    info.forms.size === 0
      ? "none"
      : [...info.forms.entries()].map(([k, n]) => `${k} x${n}`).join(", ")
  const p = info.promises
  const sessionsNote =
    p.readYourWrites && p.monotonicReads
      ? ""
      : p.readYourWrites || p.monotonicReads
        ? ` (${p.readYourWrites ? "monotonic reads" : "read-your-writes"} not promised: counted only)`
        : " (not promised in this mode: counted, not violations)"
  const deletesNote = p.noResurrection
    ? ""
    : " (not promised in this mode: counted, not violations)"
  const lines = [
    head,
    `  cluster      ${info.cluster}, seed ${info.seed}`,
    `  workload     ${(info.workloadMs / 1000).toFixed(1)} s, ${info.clients} clients; ${count(c.ops)} operations: ${count(c.writes)} writes, ${count(c.reads)} reads`,
    `  outcomes     acknowledged ${count(c.acknowledged)}, failed ${count(c.failed)}, indeterminate ${count(c.indeterminate)}`,
    `  faults       ${faults}`,
    ...info.faultNotes.map((n) => `               ${n}`),
    `  promises     ${info.promisesText}`,
    "  checks",
    `    lost (KV-9)     ${count(c.lost)} of ${count(ch.lost.checked)} acknowledged writes`,
    `    from nowhere    ${count(c.fromNowhere)} of ${count(ch.fromNowhere.checked)} values read`,
    `    diverged        ${count(c.diverged)} of ${count(ch.convergence.checked)} keys (${info.convergence})`,
    `    stale reads     ${count(c.stale)} of ${count(ch.sessions.checked)} reads${sessionsNote}`,
    `      pipelined reads checked ${count(ch.sessions.pipelined?.checked ?? 0)} (CONN-1: GET sent right after a SET or DEL of the key on one connection), stale ${count(ch.sessions.pipelined?.found ?? 0)}`,
    `    resurrected     ${count(c.resurrected)} of ${count(ch.resurrection.checked)} reads after deletes${deletesNote}`,
    `    superseded      ${count(c.superseded)} of ${count(ch.superseded.checked)} reads of causally overwritten keys${p.noResurrection ? "" : " (only final reads are promised in this mode)"}`,
    "  availability (ok / all operations invoked during each kind of fault)",
    ...byKind(ps).map(
      (k) =>
        `    ${k.kind.padEnd(14)} ${(k.ms / 1000).toFixed(1).padStart(6)} s   writes ${percent(k.writes).padStart(6)} of ${String(k.writes.total).padStart(5)}   reads ${percent(k.reads).padStart(6)} of ${String(k.reads.total).padStart(5)}   ${rate(k).padStart(6)} ok ops/s`,
    ),
  ]
  if (report.malformed.length > 0) {
    lines.push("  malformed history:", ...report.malformed.slice(0, 5).map((m) => `    ${m}`))
  }
  if (report.violations.length > 0) {
    lines.push(`  violations (first ${Math.min(maxViolations, report.violations.length)}):`)
    for (const v of report.violations.slice(0, maxViolations)) lines.push(`    ${v.message}`)
  }
  const unpromised = [
    ...ch.sessions.notPromised,
    ...ch.resurrection.notPromised,
    ...ch.superseded.notPromised,
  ]
  if (unpromised.length > 0) {
    lines.push("  not promised, for information (first 3):")
    for (const v of unpromised.slice(0, 3)) lines.push(`    ${v.message}`)
  }
  lines.push(`  files        ${info.out}: ${info.files.join(", ")}`)
  return `${lines.join("\n")}\n`
}

// ---------------------------------------------------------------------------------------------
// The SVG timeline

const COLORS: Record<string, string> = {
  kill: "#d62728",
  pause: "#ff7f0e",
  partition: "#1f77b4",
  oneway: "#17becf",
  skew: "#9467bd",
  "forward-pause": "#8c564b",
}

const esc = (s: string): string =>
  s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;")

interface Bar {
  node: string
  kind: FaultKind
  from: number
  to: number
  label: string
}

/** Fault intervals per node, from the events. */
const bars = (events: ReadonlyArray<NemesisEvent>, end: number): Array<Bar> => {
  const open = new Map<number, NemesisEvent>()
  const out: Array<Bar> = []
  const emit = (start: NemesisEvent, to: number) => {
    const label =
      start.kind === "oneway"
        ? `→${start.nodes[1] ?? ""}`
        : start.kind === "partition"
          ? "cut off"
          : start.kind === "skew"
            ? start.text.replace(/^clock skew /, "")
            : start.kind
    const targets = start.kind === "oneway" ? start.nodes.slice(0, 1) : start.nodes
    for (const node of targets) {
      out.push({ node, kind: start.kind as FaultKind, from: start.at, to, label })
    }
  }
  for (const e of events) {
    if (e.phase === "start") open.set(e.window, e)
    if (e.phase === "end") {
      const start = open.get(e.window)
      if (start !== undefined) emit(start, e.at)
      open.delete(e.window)
    }
  }
  for (const start of open.values()) emit(start, end)
  return out
}

export const timelineSvg = (
  title: string,
  subtitle: string,
  ids: ReadonlyArray<string>,
  events: ReadonlyArray<NemesisEvent>,
  ps: ReadonlyArray<Phase>,
  ops: ReadonlyArray<Op>,
  end: number,
  summary: ReadonlyArray<string>,
): string => {
  const width = 1000
  const left = 80
  const right = 20
  const plot = width - left - right
  const lane = 20
  const top = 92
  const lanesHeight = ids.length * lane
  const availTop = top + lanesHeight + 30
  const availHeight = 70
  const rateTop = availTop + availHeight + 30
  const rateHeight = 60
  const textTop = rateTop + rateHeight + 40
  const height = textTop + summary.length * 15 + 20
  const span = Math.max(1, end)
  const x = (t: number) => left + (Math.max(0, Math.min(t, span)) / span) * plot
  const parts: Array<string> = []
  parts.push(
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" font-family="monospace" font-size="11">`,
    `<rect width="${width}" height="${height}" fill="white"/>`,
    `<text x="${left}" y="22" font-size="16" font-weight="bold">${esc(title)}</text>`,
    `<text x="${left}" y="40">${esc(subtitle)}</text>`,
  )
  // Time axis (seconds).
  const step = span > 120_000 ? 30_000 : span > 40_000 ? 10_000 : 5_000
  for (let t = 0; t <= span; t += step) {
    parts.push(
      `<line x1="${x(t)}" y1="${top - 5}" x2="${x(t)}" y2="${rateTop + rateHeight}" stroke="#eee"/>`,
      `<text x="${x(t)}" y="${top - 8}" text-anchor="middle" fill="#666">${t / 1000}s</text>`,
    )
  }
  // Node lanes.
  ids.forEach((id, i) => {
    const y = top + i * lane
    parts.push(
      `<text x="${left - 8}" y="${y + 14}" text-anchor="end">${esc(id)}</text>`,
      `<rect x="${left}" y="${y + 3}" width="${plot}" height="${lane - 6}" fill="#f4f4f4"/>`,
    )
  })
  for (const b of bars(events, end)) {
    const i = ids.indexOf(b.node)
    if (i < 0) continue
    const y = top + i * lane
    const w = Math.max(2, x(b.to) - x(b.from))
    parts.push(
      `<rect x="${x(b.from)}" y="${y + 3}" width="${w}" height="${lane - 6}" fill="${COLORS[b.kind] ?? "#999"}" opacity="0.85"><title>${esc(`${b.node}: ${b.label} ${(b.from / 1000).toFixed(1)}-${(b.to / 1000).toFixed(1)} s`)}</title></rect>`,
    )
    if (w > b.label.length * 6.6 + 4) {
      parts.push(`<text x="${x(b.from) + 3}" y="${y + 14}" fill="white">${esc(b.label)}</text>`)
    }
  }
  for (const e of events.filter((e) => e.kind === "crash")) {
    for (const node of e.nodes) {
      const i = ids.indexOf(node)
      if (i >= 0) {
        parts.push(
          `<text x="${x(e.at)}" y="${top + i * lane + 15}" font-weight="bold" fill="black">✕<title>${esc(e.text)}</title></text>`,
        )
      }
    }
  }
  // Availability per phase: writes (upper half) and reads (lower half).
  parts.push(
    `<text x="${left - 8}" y="${availTop + 20}" text-anchor="end">writes ok</text>`,
    `<text x="${left - 8}" y="${availTop + 55}" text-anchor="end">reads ok</text>`,
  )
  const half = availHeight / 2
  for (const p of ps) {
    for (const [row, a] of [
      [0, p.writes],
      [1, p.reads],
    ] as const) {
      const y0 = availTop + row * half
      const w = Math.max(1, x(p.to) - x(p.from))
      const f = a.total === 0 ? 0 : a.ok / a.total
      const h = (half - 4) * f
      const color = a.total === 0 ? "#ddd" : f > 0.95 ? "#2ca02c" : f > 0.5 ? "#bcbd22" : "#d62728"
      parts.push(
        `<rect x="${x(p.from)}" y="${y0 + 2}" width="${w}" height="${half - 4}" fill="#f4f4f4"/>`,
        `<rect x="${x(p.from)}" y="${y0 + 2 + (half - 4 - h)}" width="${w}" height="${h}" fill="${color}"><title>${esc(`${p.label}: ${row === 0 ? "writes" : "reads"} ${percent(a)} of ${a.total}`)}</title></rect>`,
      )
      const text = percent(a)
      if (w > text.length * 6.6 + 4) {
        parts.push(
          `<text x="${x(p.from) + w / 2}" y="${y0 + half / 2 + 4}" text-anchor="middle">${text}</text>`,
        )
      }
    }
  }
  // Throughput: acknowledged operations per second.
  const seconds = Math.max(1, Math.ceil(span / 1000))
  const perSecond = new Array<number>(seconds).fill(0)
  for (const op of ops) {
    if (op.outcome !== "ok" || op.completedAt === undefined) continue
    const s = Math.floor(op.completedAt / 1000)
    if (s >= 0 && s < seconds) perSecond[s]!++
  }
  const peak = Math.max(1, ...perSecond)
  const points = perSecond
    .map(
      (v, s) =>
        `${x(s * 1000 + 500).toFixed(1)},${(rateTop + rateHeight - (v / peak) * rateHeight).toFixed(1)}`,
    )
    .join(" ")
  parts.push(
    `<text x="${left - 8}" y="${rateTop + rateHeight / 2}" text-anchor="end">ok ops/s</text>`,
    `<text x="${left - 8}" y="${rateTop + 10}" text-anchor="end" fill="#666">${peak}</text>`,
    `<line x1="${left}" y1="${rateTop + rateHeight}" x2="${left + plot}" y2="${rateTop + rateHeight}" stroke="#999"/>`,
    `<polyline points="${points}" fill="none" stroke="#333" stroke-width="1.2"/>`,
  )
  // Legend and summary.
  let lx = left
  for (const [kind, color] of Object.entries(COLORS)) {
    parts.push(
      `<rect x="${lx}" y="52" width="10" height="10" fill="${color}"/>`,
      `<text x="${lx + 14}" y="61">${kind}</text>`,
    )
    lx += 30 + kind.length * 7
  }
  summary.forEach((line, i) => {
    const shown = line.length > 150 ? `${line.slice(0, 149)}…` : line
    parts.push(`<text x="20" y="${textTop + i * 15}" xml:space="preserve">${esc(shown)}</text>`)
  })
  parts.push("</svg>")
  return `${parts.join("\n")}\n`
}
