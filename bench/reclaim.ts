/**
 * Reclamation under an expiring workload: does the store stay bounded by the live keys plus one
 * grace period of dead ones? 3 real node processes (LMDB, N=3 R=2 W=2) with a short grace;
 * `--ops` distinct `SET key value EX 1`, paced evenly over `--seconds`, through ioredis spread
 * over the three nodes with at most `--concurrency` requests in flight. Every 5 s it samples each
 * node's INFO keyspace (`keys=`, and `live=`/`tombstones=` where the node reports them) and the
 * reaper's counters from DHT.STATUS; after the load it keeps sampling for grace + 30 s so the
 * tail drains. It prints the samples as a table, then the maximum and final keys per node
 * against the bound
 *
 *   B = rate × 1 s (keys still live: EX 1) + rate × (grace + max message age + 3 × max clock
 *       skew + 2 s reaper slack)
 *
 * and writes an SVG plot (keys stored per node against time, B dashed, the load shaded). It
 * stops every process it started and removes its data directories, also on Ctrl-C or error.
 * Benchmarks print; this one prints PASS/FAIL for the two checks but exits 0 either way.
 *
 * Run: npx tsx bench/reclaim.ts [--quick] [--ops 100000] [--seconds 600] [--grace-ms 10000]
 *        [--concurrency 64] [--svg docs/reclaim-store-size.svg]
 * `--quick` is 10,000 ops over 60 s (same rate) and writes its plot under the OS temp directory
 * unless --svg is given.
 */
import { writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { pathToFileURL } from "node:url"
import { performance } from "node:perf_hooks"
import type { Redis } from "ioredis"
import { Cluster, stopAll } from "../properties/helpers/cluster.ts"
import { arg } from "./lib.ts"
import { connect } from "./load.ts"

const QUICK = process.argv.includes("--quick")
const OPS = arg("ops", QUICK ? 10_000 : 100_000)
const SECONDS = arg("seconds", QUICK ? 60 : 600)
const GRACE_MS = arg("grace-ms", 10_000)
const CONCURRENCY = arg("concurrency", 64)
const MAX_MESSAGE_AGE_MS = 3000
const MAX_CLOCK_SKEW_MS = 100
const REAPER_SLACK_MS = 2000
const SAMPLE_MS = 5000
const TAIL_MS = GRACE_MS + 30_000
const svgArg = process.argv.indexOf("--svg")
const SVG_PATH =
  svgArg >= 0
    ? process.argv[svgArg + 1]!
    : QUICK
      ? join(tmpdir(), "reclaim-store-size-quick.svg")
      : "docs/reclaim-store-size.svg"

export interface Sample {
  /** Seconds since the load started. */
  readonly t: number
  readonly sent: number
  readonly acked: number
  /** Per node; NaN where the node did not answer. */
  readonly keys: ReadonlyArray<number>
  readonly live: ReadonlyArray<number>
  readonly tombstones: ReadonlyArray<number>
  readonly reaped: ReadonlyArray<number>
  readonly candidates: ReadonlyArray<number>
}

const field = (text: string, name: string): number => {
  const m = new RegExp(`(?:^|[,:])${name}=(\\d+)`, "m").exec(text)
  return m === null ? Number.NaN : Number(m[1])
}

interface NodeSample {
  keys: number
  live: number
  tombstones: number
  reaped: number
  candidates: number
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, Math.max(0, ms)))

/** `p`, or a rejection after `ms` (a node that does not answer must not stall the sampling). */
const within = <A>(p: Promise<A>, ms: number): Promise<A> =>
  Promise.race([
    p,
    sleep(ms).then(() => {
      throw new Error(`no answer within ${ms} ms`)
    }),
  ])

const sampleNode = async (c: Redis): Promise<NodeSample> => {
  const out: NodeSample = {
    keys: Number.NaN,
    live: Number.NaN,
    tombstones: Number.NaN,
    reaped: Number.NaN,
    candidates: Number.NaN,
  }
  const [info, status] = await Promise.allSettled([
    within(c.info("keyspace"), 4000),
    within(c.call("DHT.STATUS") as Promise<string>, 4000),
  ])
  if (info.status === "fulfilled") {
    const line = info.value.split(/\r?\n/).find((l) => l.startsWith("db0:")) ?? ""
    out.keys = field(line, "keys")
    out.live = field(line, "live")
    out.tombstones = field(line, "tombstones")
  }
  if (status.status === "fulfilled") {
    try {
      const s = JSON.parse(String(status.value)) as {
        reclaim?: { reaped?: number; candidates?: number }
      }
      out.reaped = s.reclaim?.reaped ?? Number.NaN
      out.candidates = s.reclaim?.candidates ?? Number.NaN
    } catch {}
  }
  return out
}

const show = (v: number): string => (Number.isNaN(v) ? "-" : String(v))

// ---------------------------------------------------------------------------------------------
// The plot

const W = 760
const H = 460
const M = { left: 70, right: 20, top: 40, bottom: 75 }
const COLORS = ["#1f77b4", "#2ca02c", "#9467bd", "#8c564b", "#e377c2"]

const fmt = (x: number): string => x.toFixed(1)

const escapeXml = (text: string): string =>
  text.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;")

/** A round tick step (1, 2 or 5 × 10^k) giving about `count` ticks up to `max`. */
const tickStep = (max: number, count: number): number => {
  const raw = max / count
  const p = 10 ** Math.floor(Math.log10(raw))
  return [1, 2, 5, 10].map((m) => m * p).find((s) => s >= raw) ?? 10 * p
}

export const storeSizeSvg = (
  samples: ReadonlyArray<Sample>,
  nodes: ReadonlyArray<string>,
  bound: number,
  loadEndS: number,
  title: string,
): string => {
  const tMax = Math.max(...samples.map((s) => s.t), loadEndS, 1)
  const kMax = Math.max(bound, ...samples.flatMap((s) => s.keys.filter((k) => !Number.isNaN(k))))
  const yStep = tickStep(kMax * 1.1, 6)
  const yMax = Math.ceil((kMax * 1.1) / yStep) * yStep
  const xStep = tickStep(tMax, 8)
  const xMax = Math.ceil(tMax / xStep) * xStep
  const plotW = W - M.left - M.right
  const plotH = H - M.top - M.bottom
  const x = (t: number) => M.left + (t / xMax) * plotW
  const y = (v: number) => M.top + plotH - (v / yMax) * plotH
  const out: Array<string> = []
  out.push(
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" ` +
      `viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="12">`,
  )
  out.push(`<rect x="0" y="0" width="${W}" height="${H}" fill="white"/>`)
  out.push(
    `<text x="${W / 2}" y="22" text-anchor="middle" font-size="14">${escapeXml(title)}</text>`,
  )
  // The load period.
  out.push(
    `<rect x="${fmt(x(0))}" y="${M.top}" width="${fmt(x(loadEndS) - x(0))}" height="${plotH}" fill="#fdebd0"/>`,
  )
  // Grid, axes, ticks.
  out.push(`<g stroke="#ddd">`)
  for (let v = 0; v <= yMax; v += yStep)
    out.push(`<line x1="${M.left}" y1="${fmt(y(v))}" x2="${W - M.right}" y2="${fmt(y(v))}"/>`)
  for (let t = 0; t <= xMax; t += xStep)
    out.push(`<line x1="${fmt(x(t))}" y1="${M.top}" x2="${fmt(x(t))}" y2="${M.top + plotH}"/>`)
  out.push(`</g>`)
  out.push(
    `<g stroke="black"><line x1="${M.left}" y1="${M.top + plotH}" x2="${W - M.right}" ` +
      `y2="${M.top + plotH}"/><line x1="${M.left}" y1="${M.top}" x2="${M.left}" y2="${M.top + plotH}"/></g>`,
  )
  for (let t = 0; t <= xMax; t += xStep)
    out.push(`<text x="${fmt(x(t))}" y="${M.top + plotH + 18}" text-anchor="middle">${t}</text>`)
  for (let v = 0; v <= yMax; v += yStep)
    out.push(`<text x="${M.left - 8}" y="${fmt(y(v) + 4)}" text-anchor="end">${v}</text>`)
  out.push(
    `<text x="${M.left + plotW / 2}" y="${M.top + plotH + 38}" text-anchor="middle">time since the load started (s)</text>`,
  )
  out.push(
    `<text x="16" y="${M.top + plotH / 2}" text-anchor="middle" ` +
      `transform="rotate(-90 16 ${M.top + plotH / 2})">keys stored on the node (INFO keys=)</text>`,
  )
  // The bound.
  out.push(
    `<line x1="${M.left}" y1="${fmt(y(bound))}" x2="${W - M.right}" y2="${fmt(y(bound))}" ` +
      `stroke="#d62728" stroke-width="1.5" stroke-dasharray="6 4"/>`,
  )
  // One line per node (gaps where a sample failed); the nodes usually hold the same keys, so
  // earlier nodes are drawn wider to stay visible under later ones.
  const width = (i: number) => fmt(1.5 + 2 * (nodes.length - 1 - i))
  nodes.forEach((_, i) => {
    const color = COLORS[i % COLORS.length]!
    let run: Array<string> = []
    const flush = () => {
      if (run.length > 0)
        out.push(
          `<polyline points="${run.join(" ")}" fill="none" stroke="${color}" stroke-width="${width(i)}"/>`,
        )
      run = []
    }
    for (const s of samples) {
      const k = s.keys[i]!
      if (Number.isNaN(k)) flush()
      else run.push(`${fmt(x(s.t))},${fmt(y(k))}`)
    }
    flush()
  })
  // Legend: one row under the axis label, clear of the data.
  let lx = M.left
  const ly = H - 16
  const item = (mark: string, label: string) => {
    out.push(mark)
    out.push(`<text x="${lx + 30}" y="${ly + 4}">${escapeXml(label)}</text>`)
    lx += 30 + 7 * label.length + 18
  }
  for (const [i, id] of nodes.entries()) {
    const color = COLORS[i % COLORS.length]!
    item(
      `<line x1="${lx}" y1="${ly}" x2="${lx + 24}" y2="${ly}" stroke="${color}" stroke-width="${width(i)}"/>`,
      id,
    )
  }
  item(
    `<line x1="${lx}" y1="${ly}" x2="${lx + 24}" y2="${ly}" stroke="#d62728" stroke-width="1.5" stroke-dasharray="6 4"/>`,
    `bound B = ${Math.round(bound)} keys`,
  )
  item(
    `<rect x="${lx}" y="${ly - 6}" width="24" height="12" fill="#fdebd0" stroke="#e0c090"/>`,
    "load period (SET … EX 1)",
  )
  out.push(`</svg>`)
  return `${out.join("\n")}\n`
}

// ---------------------------------------------------------------------------------------------
// The run

let cluster: Cluster | undefined
const clients: Array<Redis> = []
let cleaning: Promise<void> | undefined

const cleanup = (): Promise<void> => {
  cleaning ??= (async () => {
    for (const c of clients) c.disconnect()
    await stopAll([cluster])
  })()
  return cleaning
}

const main = async () => {
  const rate = OPS / SECONDS
  const margin = GRACE_MS + MAX_MESSAGE_AGE_MS + 3 * MAX_CLOCK_SKEW_MS + REAPER_SLACK_MS
  const bound = rate * 1 + (rate * margin) / 1000
  console.error(
    `starting 3 nodes (LMDB, N=3 R=2 W=2, --tombstone-grace-ms ${GRACE_MS} ` +
      `--max-message-age-ms ${MAX_MESSAGE_AGE_MS} --max-clock-skew-ms ${MAX_CLOCK_SKEW_MS}) …`,
  )
  cluster = await Cluster.start({
    nodes: 3,
    store: "lmdb",
    n: 3,
    r: 2,
    w: 2,
    cluster: "bench-reclaim",
    readyTimeoutMs: 60_000,
    args: [
      ...["--tombstone-grace-ms", String(GRACE_MS)],
      ...["--max-message-age-ms", String(MAX_MESSAGE_AGE_MS)],
      ...["--max-clock-skew-ms", String(MAX_CLOCK_SKEW_MS)],
    ],
  })
  const ids = cluster.nodes.map((n) => n.id)
  const ports = cluster.nodes.map((n) => n.clientPort)
  const writers = ports.map((p) => connect(p))
  const probes = ports.map((p) => connect(p))
  clients.push(...writers, ...probes)
  await Promise.all([...writers, ...probes].map((c) => c.ping()))

  console.log(
    `Reclamation under an expiring workload: ${OPS.toLocaleString("en-US")} distinct SET … EX 1 ` +
      `over ${SECONDS} s (${rate.toFixed(1)} ops/s) through 3 nodes, at most ${CONCURRENCY} in flight; ` +
      `grace ${GRACE_MS} ms, max message age ${MAX_MESSAGE_AGE_MS} ms, max clock skew ${MAX_CLOCK_SKEW_MS} ms`,
  )
  const cols = (name: string) => ids.map((id) => `${name}.${id}`.padStart(10)).join(" ")
  console.log(
    `${"t s".padStart(6)} ${"sent".padStart(8)} ${"acked".padStart(8)} ${cols("keys")} ` +
      `${cols("live")} ${cols("tomb")} ${cols("reaped")} ${cols("cand")}`,
  )

  const samples: Array<Sample> = []
  let sent = 0
  let acked = 0
  let errors = 0
  let firstError: string | undefined
  let inFlight = 0
  let loadDone = false
  const t0 = performance.now()
  const elapsedS = () => (performance.now() - t0) / 1000

  const sampler = (async () => {
    let loadEndAt: number | undefined
    for (let k = 0; ; k++) {
      await sleep(t0 + k * SAMPLE_MS - performance.now())
      const t = k * (SAMPLE_MS / 1000)
      const per = await Promise.all(probes.map(sampleNode))
      const s: Sample = {
        t,
        sent,
        acked,
        keys: per.map((p) => p.keys),
        live: per.map((p) => p.live),
        tombstones: per.map((p) => p.tombstones),
        reaped: per.map((p) => p.reaped),
        candidates: per.map((p) => p.candidates),
      }
      samples.push(s)
      const col = (xs: ReadonlyArray<number>) => xs.map((v) => show(v).padStart(10)).join(" ")
      console.log(
        `${String(t).padStart(6)} ${String(sent).padStart(8)} ${String(acked).padStart(8)} ` +
          `${col(s.keys)} ${col(s.live)} ${col(s.tombstones)} ${col(s.reaped)} ${col(s.candidates)}`,
      )
      if (loadDone && loadEndAt === undefined) loadEndAt = performance.now()
      if (loadEndAt !== undefined && performance.now() - loadEndAt >= TAIL_MS) return
    }
  })()

  // The load: op i is due at t0 + i × interval; at most CONCURRENCY in flight.
  const intervalMs = (SECONDS * 1000) / OPS
  let wake: (() => void) | undefined
  const settled = () => {
    inFlight--
    const w = wake
    wake = undefined
    w?.()
  }
  while (sent < OPS) {
    const due = Math.min(OPS, Math.floor((performance.now() - t0) / intervalMs) + 1)
    while (sent < due && inFlight < CONCURRENCY) {
      const i = sent++
      inFlight++
      writers[i % writers.length]!.set(`reclaim:${i}`, `value-${i}`, "EX", 1).then(
        () => {
          acked++
          settled()
        },
        (e: Error) => {
          errors++
          firstError ??= e.message
          settled()
        },
      )
    }
    if (sent >= OPS) break
    if (sent < due) await new Promise<void>((resolve) => (wake = resolve))
    else await sleep(t0 + sent * intervalMs - performance.now())
  }
  while (inFlight > 0) await new Promise<void>((resolve) => (wake = resolve))
  const loadSeconds = elapsedS()
  loadDone = true
  console.error(
    `load done after ${loadSeconds.toFixed(1)} s (${acked} acknowledged, ${errors} errors); ` +
      `sampling for ${TAIL_MS / 1000} s more …`,
  )
  await sampler

  // Summary.
  const maxPer = ids.map((_, i) =>
    Math.max(...samples.map((s) => s.keys[i]!).filter((k) => !Number.isNaN(k))),
  )
  const final = samples[samples.length - 1]!
  const maxStored = Math.max(...maxPer)
  const finalOk = final.keys.every((k) => k === 0)
  const list = (xs: ReadonlyArray<number>) => ids.map((id, i) => `${id}=${show(xs[i]!)}`).join(" ")
  console.log("")
  console.log(
    `load: ${sent} SET … EX 1 sent, ${acked} acknowledged, ${errors} errors in ${loadSeconds.toFixed(1)} s ` +
      `(${(acked / loadSeconds).toFixed(1)} ops/s)${firstError === undefined ? "" : `; first error: ${firstError}`}`,
  )
  console.log(`max keys per node:   ${list(maxPer)}`)
  console.log(`final keys per node: ${list(final.keys)} (at t=${final.t} s)`)
  console.log(`reaped per node:     ${list(final.reaped)}`)
  console.log(
    `bound B = ${rate.toFixed(2)} ops/s × 1 s live + ${rate.toFixed(2)} ops/s × ` +
      `(${GRACE_MS} + ${MAX_MESSAGE_AGE_MS} + ${3 * MAX_CLOCK_SKEW_MS} + ${REAPER_SLACK_MS}) ms ` +
      `= ${bound.toFixed(0)} keys`,
  )
  console.log(
    `${maxStored <= bound ? "PASS" : "FAIL"}: max stored ≤ B (${maxStored} ≤ ${bound.toFixed(0)})`,
  )
  console.log(`${finalOk ? "PASS" : "FAIL"}: final stored = 0 (${list(final.keys)})`)

  writeFileSync(
    SVG_PATH,
    storeSizeSvg(
      samples,
      ids,
      bound,
      loadSeconds,
      `Keys stored per node: ${OPS.toLocaleString("en-US")} SET … EX 1 over ${SECONDS} s, ` +
        `grace ${GRACE_MS / 1000} s (3 nodes, N=3)`,
    ),
  )
  console.error(`wrote ${SVG_PATH}`)
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  for (const [name, v] of [
    ["ops", OPS],
    ["seconds", SECONDS],
    ["grace-ms", GRACE_MS],
    ["concurrency", CONCURRENCY],
  ] as const) {
    if (!Number.isFinite(v) || v <= 0) {
      console.error(`--${name} must be a positive number (got ${v})`)
      process.exit(2)
    }
  }
  for (const signal of ["SIGINT", "SIGTERM"] as const) {
    process.once(signal, () => {
      console.error(`\n${signal}: stopping the nodes …`)
      cleanup().finally(() => process.exit(130))
    })
  }
  main()
    .then(
      () => 0,
      (e) => {
        console.error(e)
        return 1
      },
    )
    .then(async (code) => {
      await cleanup()
      process.exit(code)
    })
}
