/**
 * `dht verify`: Jepsen in a box. Start a local cluster of real node processes (or use an
 * existing one), run a bounded concurrent workload through ioredis while a seeded nemesis kills,
 * pauses, partitions and skews nodes, then heal everything, wait for quiescence, read every key
 * at every node and check the recorded history (spec/history.ts): no acknowledged write lost
 * (KV-9), no value from nowhere, convergence, and the session guarantees the mode promises.
 * Exit 0 when no promised check is violated, 1 otherwise (2 for usage errors).
 *
 * Keeps in --out: history.jsonl (every operation: invoke and complete lines), nemesis.jsonl
 * (fault events), final.jsonl (final reads per node and key), summary.json, verdict.txt,
 * report.svg (the fault timeline with availability per phase) and nodes/<id>.log.
 *
 * Modules: verify-nodes.ts (processes, namespaces, faults), verify-workload.ts (clients and
 * recording), verify-nemesis.ts (the schedule), verify-report.ts (verdict and SVG).
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join, resolve } from "node:path"
import {
  check,
  type FinalRead,
  type Promises,
  sloppyPromises,
  strictPromises,
} from "../../spec/history.ts"
import { DhtClient } from "../client/client.ts"
import { parseAddress } from "../node/config.ts"
import * as Args from "./args.ts"
import * as Flags from "./flags.ts"
import { fetchStatus } from "./status.ts"
import {
  FAULT_KINDS,
  type FaultKind,
  Nemesis,
  type NemesisEvent,
  schedule,
} from "./verify-nemesis.ts"
import { type Endpoint, Nodes } from "./verify-nodes.ts"
import { byKind, phases, timelineSvg, verdictText } from "./verify-report.ts"
import { Connections, Recorder, Runner, runWorkload } from "./verify-workload.ts"

const spec: Args.CommandSpec = {
  name: "verify",
  summary: "check safety on a real cluster under faults (workload, nemesis, history checker)",
  usage:
    "dht verify [--nodes 5] [--time 60s] [--mode ap|cp] [--routing ring|chord] [--nemesis LIST] [--seed S] [--target HOST:PORT,...] [--out DIR] [--unsafe-failover] [--unsafe-unordered]",
  flags: [
    Args.flag("nodes", "int", "K", "node processes to start", "5"),
    Args.flag("time", "string", "DURATION", "how long the workload runs: 90s, 2m, 1500ms", "60s"),
    Args.flag("mode", "string", "ap|cp", "the nodes' mode", "ap"),
    Args.flag("routing", "string", "ring|chord", "the nodes' routing", "ring"),
    ...Flags.replication,
    Args.flag(
      "nemesis",
      "string",
      "LIST",
      `faults, comma-separated: ${FAULT_KINDS.join(", ")}, all or none`,
      "all",
    ),
    Args.flag("seed", "int", "S", "seed of the workload and the nemesis", "random (printed)"),
    Args.flag(
      "target",
      "string",
      "HOST:PORT,...",
      "an existing cluster's client addresses: run the workload and the checks there, no nemesis",
    ),
    Args.flag(
      "out",
      "string",
      "DIR",
      "where to keep the history and the report",
      "a fresh temporary directory",
    ),
    Args.flag(
      "unsafe-failover",
      "bool",
      "",
      "negative control: start the nodes with DHT_UNSAFE_FAILOVER=1 (the old failover: KV-9 should fail)",
    ),
    Args.flag(
      "unsafe-unordered",
      "bool",
      "",
      "negative control: start the nodes with DHT_UNSAFE_UNORDERED=1 (commands run on arrival, not in connection order: pipelined reads should miss their writes, CONN-1)",
    ),
    Args.flag("clients", "int", "N", "concurrent client sessions", "10"),
    Args.flag(
      "op-timeout-ms",
      "int",
      "MS",
      "a client gives up on an operation (indeterminate)",
      "8000",
    ),
    Args.flag(
      "quiesce-timeout-ms",
      "int",
      "MS",
      "after the heal, wait at most this long for every node's final reads to agree",
      "60000",
    ),
    Args.flag(
      "promise",
      "string",
      "LIST",
      "session guarantees to enforce: ryw, monotonic, deletes, all or none",
      "all for cp, none for ap (counted, not violations)",
    ),
    Args.flag("keep-data", "bool", "", "keep the nodes' data directories in --out/data"),
  ],
  notes: [
    "Partitions need root (each node in its own network namespace); without it only process",
    "faults run on loopback, and the output says so. Clock skew needs libfaketime",
    "(apt-get install faketime). forward-pause needs ring routing and more nodes than N.",
    "Exit status: 0 no violation, 1 a violation (or the run could not be made), 2 usage error.",
  ],
  examples: [
    "dht verify --nodes 5 --time 120s",
    "dht verify --time 40s --nemesis kill,pause --seed 7 --out ./verify-out",
    "dht verify --nemesis forward-pause --unsafe-failover      # must fail: lost > 0",
    "dht verify --mode cp --time 40s --unsafe-unordered        # must fail: stale pipelined reads",
    "dht verify --target 127.0.0.1:7001,127.0.0.1:7002,127.0.0.1:7003 --time 30s",
  ],
}

/** "90s", "2m", "1500ms", "90" (seconds) → ms. */
export const parseDuration = (text: string): number | undefined => {
  const m = /^(\d+(?:\.\d+)?)\s*(ms|s|m|min)?$/i.exec(text.trim())
  if (m === null) return undefined
  const value = Number(m[1])
  const unit = (m[2] ?? "s").toLowerCase()
  return Math.round(value * (unit === "ms" ? 1 : unit === "s" ? 1000 : 60_000))
}

const parsePromises = (text: string): Promises | string => {
  const words = text.split(",").map((w) => w.trim().toLowerCase())
  if (words.includes("all")) return strictPromises
  if (words.includes("none")) return sloppyPromises
  const known = ["ryw", "monotonic", "deletes"]
  const bad = words.find((w) => !known.includes(w))
  if (bad !== undefined) return `--promise: unknown "${bad}" (ryw, monotonic, deletes, all, none)`
  return {
    readYourWrites: words.includes("ryw"),
    monotonicReads: words.includes("monotonic"),
    noResurrection: words.includes("deletes"),
  }
}

const promisesText = (p: Promises): string => {
  const on = [
    p.readYourWrites ? "read-your-writes" : undefined,
    p.monotonicReads ? "monotonic reads" : undefined,
    p.noResurrection ? "no resurrection after delete" : undefined,
  ].filter((x) => x !== undefined)
  const base = "no lost write, no value from nowhere, convergence"
  return on.length === 0
    ? `${base} (stale reads and resurrections counted, not violations)`
    : `${base}, ${on.join(", ")}`
}

// ---------------------------------------------------------------------------------------------
// Display: one line redrawn in place on a TTY, plain lines otherwise (stderr)

class Display {
  private readonly tty = process.stderr.isTTY === true
  private line = ""
  private lastPlain = 0

  log(text: string): void {
    if (this.tty && this.line !== "") process.stderr.write("\r\x1b[K")
    process.stderr.write(`${text}\n`)
    if (this.tty && this.line !== "") process.stderr.write(this.line)
  }

  status(text: string, now: number): void {
    if (this.tty) {
      this.line = text.slice(0, (process.stderr.columns ?? 120) - 1)
      process.stderr.write(`\r${this.line}\x1b[K`)
    } else if (now - this.lastPlain >= 10_000) {
      this.lastPlain = now
      process.stderr.write(`${text}\n`)
    }
  }

  done(): void {
    if (this.tty && this.line !== "") process.stderr.write("\r\x1b[K")
    this.line = ""
  }
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms))

// ---------------------------------------------------------------------------------------------
// Final reads and quiescence

/** DHT.GET key R 1 at every node for every key: each node's own answer. */
const finalReads = async (
  endpoints: ReadonlyArray<Endpoint>,
  keys: ReadonlyArray<string>,
  connections: Connections,
): Promise<Array<FinalRead>> => {
  const perNode = await Promise.all(
    endpoints.map(async (e) => {
      const out: Array<FinalRead> = []
      for (const key of keys) {
        const conn = connections.get("final", e, 3000)
        try {
          const read = await new DhtClient(conn.redis).get(key, { r: 1 })
          out.push({ node: e.id, key, values: read.siblings })
        } catch (err) {
          out.push({ node: e.id, key, error: err instanceof Error ? err.message : String(err) })
          if (!(err instanceof Error && err.name === "ReplyError")) {
            connections.drop("final", e, conn)
          }
        }
      }
      return out
    }),
  )
  return perNode.flat()
}

const agree = (reads: ReadonlyArray<FinalRead>): boolean => {
  const byKey = new Map<string, string>()
  for (const r of reads) {
    if (r.values === undefined) return false
    const canonical = JSON.stringify([...r.values].sort())
    const seen = byKey.get(r.key)
    if (seen !== undefined && seen !== canonical) return false
    byKey.set(r.key, canonical)
  }
  return true
}

/** Hints still held anywhere (AP handoff not finished), or a node not answering: -1. */
const hintsLeft = async (endpoints: ReadonlyArray<Endpoint>): Promise<number> => {
  let total = 0
  for (const e of endpoints) {
    try {
      total += (await fetchStatus({ host: e.host, port: e.port }, 2000)).hints
    } catch {
      return -1
    }
  }
  return total
}

// ---------------------------------------------------------------------------------------------
// The run

interface Options {
  readonly k: number
  readonly timeMs: number
  readonly mode: "ap" | "cp"
  readonly routing: "ring" | "chord"
  readonly n: number
  readonly r: number
  readonly w: number
  readonly nemesis: ReadonlyArray<FaultKind>
  readonly seed: number
  readonly targets: ReadonlyArray<Endpoint> | undefined
  readonly out: string
  readonly unsafeFailover: boolean
  readonly unsafeUnordered: boolean
  readonly clients: number
  readonly opTimeoutMs: number
  readonly quiesceMs: number
  readonly promises: Promises | undefined
  readonly keepData: boolean
}

const verify = async (o: Options): Promise<number> => {
  const display = new Display()
  const say = (line: string) => display.log(line)
  let nodes: Nodes | undefined
  let nemesis: Nemesis | undefined
  const connections = new Connections(o.opTimeoutMs)
  let stopping = false
  let signals = 0
  const onSignal = (signal: NodeJS.Signals) => {
    signals++
    if (signals === 1) {
      stopping = true
      say(
        `${signal}: stopping the workload and the nemesis; healing, then checking what was recorded (again to abort)`,
      )
      return
    }
    say(`${signal}: aborting; stopping every node`)
    connections.closeAll()
    nodes?.cleanupSync()
    if (!o.keepData) rmSync(join(o.out, "data"), { recursive: true, force: true })
    process.exit(130)
  }
  process.on("SIGINT", onSignal)
  process.on("SIGTERM", onSignal)
  try {
    mkdirSync(o.out, { recursive: true })
    // ---- The cluster
    let endpoints: ReadonlyArray<Endpoint>
    let clusterText: string
    const faultNotes: Array<string> = []
    let kinds = [...o.nemesis]
    let mode = o.mode
    if (o.targets !== undefined) {
      endpoints = o.targets
      let report: Awaited<ReturnType<typeof fetchStatus>> | undefined
      try {
        report = await fetchStatus({ host: endpoints[0]!.host, port: endpoints[0]!.port })
        mode = report.mode === "cp" ? "cp" : "ap"
      } catch (e) {
        say(`dht verify: ${e instanceof Error ? e.message : String(e)}`)
        return 1
      }
      clusterText = `existing cluster of ${endpoints.length} targets (mode ${mode}, N=${report.n} R=${report.r} W=${report.w})`
      kinds = []
      faultNotes.push("no nemesis against an existing cluster (--target)")
    } else {
      say(
        `starting ${o.k} nodes (mode ${o.mode}, ${o.routing} routing, N=${o.n} R=${o.r} W=${o.w}) …`,
      )
      const started = Date.now()
      try {
        nodes = await Nodes.start({
          k: o.k,
          dir: o.out,
          mode: o.mode,
          routing: o.routing,
          n: o.n,
          r: o.r,
          w: o.w,
          unsafeFailover: o.unsafeFailover,
          unsafeUnordered: o.unsafeUnordered,
          wantNetns: kinds.includes("partition") || kinds.includes("oneway"),
          wantSkew: kinds.includes("skew"),
          readyTimeoutMs: Math.max(30_000, 3000 * o.k),
          onCrash: (i, how) => nemesis?.crashed(i, how),
        })
      } catch (e) {
        say(`dht verify: the cluster did not start: ${e instanceof Error ? e.message : String(e)}`)
        return 1
      }
      endpoints = nodes.endpoints
      const networkText =
        nodes.network === "netns"
          ? "each node in its own network namespace"
          : `loopback only${nodes.networkNote === undefined ? "" : `, ${nodes.networkNote}`}`
      say(`cluster ready in ${((Date.now() - started) / 1000).toFixed(1)} s: ${networkText}`)
      clusterText = `${o.k} local nodes (${networkText}), mode ${o.mode}, ${o.routing} routing, N=${o.n} R=${o.r} W=${o.w}${o.unsafeFailover ? ", UNSAFE FAILOVER (negative control)" : ""}${o.unsafeUnordered ? ", UNSAFE UNORDERED (negative control)" : ""}`
      if (!nodes.canPartition) {
        const cut = kinds.filter((kd) => kd === "partition" || kd === "oneway")
        if (cut.length > 0) {
          faultNotes.push(
            `${cut.join(", ")}: skipped (${nodes.networkNote ?? "no network namespaces"}: partitions need root; only process faults on loopback)`,
          )
        }
        kinds = kinds.filter((kd) => kd !== "partition" && kd !== "oneway")
      }
      if (kinds.includes("skew") && nodes.faketime === undefined) {
        faultNotes.push("skew: skipped (libfaketime not installed: apt-get install faketime)")
        kinds = kinds.filter((kd) => kd !== "skew")
      }
      if (kinds.includes("forward-pause") && (o.routing !== "ring" || o.k <= o.n)) {
        faultNotes.push("forward-pause: skipped (needs ring routing and more nodes than N)")
        kinds = kinds.filter((kd) => kd !== "forward-pause")
      }
    }
    for (const note of faultNotes) say(`nemesis: ${note}`)
    if (o.unsafeFailover)
      say("nodes run with DHT_UNSAFE_FAILOVER=1: the old failover (KV-9 is expected to fail)")
    if (o.unsafeUnordered)
      say(
        "nodes run with DHT_UNSAFE_UNORDERED=1: no connection order (pipelined reads are expected to miss their writes, CONN-1)",
      )
    const promises = o.promises ?? (mode === "cp" ? strictPromises : sloppyPromises)

    // ---- Workload and nemesis
    const t0 = performance.now()
    const recorder = new Recorder(join(o.out, "history.jsonl"), t0, {
      seed: o.seed,
      cluster: clusterText,
      endpoints,
    })
    const runner = new Runner(recorder, connections)
    const windows = nodes === undefined ? [] : schedule(kinds, o.seed, o.timeMs)
    if (nodes !== undefined) {
      nemesis = new Nemesis({
        nodes,
        runner,
        windows,
        seed: o.seed,
        eventsPath: join(o.out, "nemesis.jsonl"),
        now: () => recorder.now(),
        until: o.timeMs,
        stopping: () => stopping,
        n: o.n,
        onEvent: (e: NemesisEvent) => {
          const at = `[${(e.at / 1000).toFixed(1).padStart(5)}s]`
          say(
            `${at} ${e.phase === "end" ? "end  " : e.phase === "start" ? "start" : "     "} ${e.kind}: ${e.text}`,
          )
        },
        probeTimeoutMs: Math.max(15_000, o.opTimeoutMs),
      })
    }
    say(
      `workload: ${o.clients} clients for ${(o.timeMs / 1000).toFixed(0)} s; nemesis: ${kinds.length === 0 ? "none" : kinds.join(", ")} (${windows.length} windows); seed ${o.seed}`,
    )
    const ticker = setInterval(() => {
      const now = recorder.now()
      const t = recorder.tally
      const up =
        nodes === undefined
          ? ""
          : ` | up ${nodes.ids.filter((_, i) => nodes!.state(i) === "up").length}/${nodes.k}`
      const faults = nemesis === undefined ? [] : [...nemesis.active.values()].map((f) => f.text)
      display.status(
        `[${(now / 1000).toFixed(1).padStart(5)}s/${(o.timeMs / 1000).toFixed(0)}s] ops ${t.invoked}: ok ${t.ok}, failed ${t.failed}, indeterminate ${t.indeterminate}${up} | ${faults.length === 0 ? "healthy" : faults.join(" + ")}`,
        now,
      )
    }, 250)
    try {
      await Promise.all([
        runWorkload({
          runner,
          endpoints,
          clients: o.clients,
          seed: o.seed,
          until: o.timeMs,
          maxOpsPerClient: Math.ceil((o.timeMs / 1000) * 500),
          stopping: () => stopping,
        }),
        nemesis?.run(),
      ])
    } finally {
      clearInterval(ticker)
      display.done()
    }
    const workloadEnd = recorder.now()
    const t = recorder.tally
    say(
      `workload done: ${t.invoked} operations (ok ${t.ok}, failed ${t.failed}, indeterminate ${t.indeterminate})`,
    )

    // ---- Heal, quiesce, final reads
    if (nemesis !== undefined) await nemesis.healAll()
    const healedAt = recorder.now()
    // Every key the workload touched (owners move on to fresh keys), and the probe keys.
    const keys = [...new Set(recorder.ops.map((op) => op.key))].sort()
    const deadline = Date.now() + o.quiesceMs
    let final: Array<FinalRead> = []
    let agreeing = 0
    let converged = false
    await sleep(Math.min(2000, o.quiesceMs))
    for (let round = 0; ; round++) {
      final = await finalReads(endpoints, keys, connections)
      const hints = await hintsLeft(endpoints)
      if (agree(final) && hints === 0) agreeing++
      else agreeing = 0
      if (agreeing >= 2) {
        converged = true
        break
      }
      if (Date.now() > deadline || (signals > 0 && round > 0)) break
      display.status(
        `waiting for quiescence: ${hints < 0 ? "a node does not answer" : `${hints} hints left`}, final reads ${agree(final) ? "agree" : "differ"}`,
        0,
      )
      await sleep(1000)
    }
    display.done()
    const convergence = converged
      ? `final reads at ${endpoints.length} nodes agreed ${((recorder.now() - healedAt) / 1000).toFixed(1)} s after the heal`
      : `final reads did not agree within ${(o.quiesceMs / 1000).toFixed(0)} s of the heal`
    say(convergence)
    writeFileSync(join(o.out, "final.jsonl"), `${final.map((f) => JSON.stringify(f)).join("\n")}\n`)
    await recorder.close()
    await nemesis?.close()

    // ---- Check and report
    const ops = recorder.history()
    const report = check({ ops, final }, { promises, maxListed: 1000 })
    const ps = phases(nemesis?.events ?? [], ops, workloadEnd)
    const injected = new Map<string, number>(nemesis?.injected ?? [])
    const files = [
      "history.jsonl",
      "nemesis.jsonl",
      "final.jsonl",
      "summary.json",
      "verdict.txt",
      "report.svg",
      ...(nodes === undefined ? [] : ["nodes/"]),
    ]
    const text = verdictText(
      report,
      {
        cluster: clusterText,
        seed: o.seed,
        workloadMs: workloadEnd,
        clients: o.clients,
        promises,
        promisesText: promisesText(promises),
        injected,
        forms: nemesis?.forms ?? new Map(),
        faultNotes,
        convergence,
        out: o.out,
        files,
      },
      ps,
    )
    writeFileSync(join(o.out, "verdict.txt"), text)
    writeFileSync(
      join(o.out, "summary.json"),
      `${JSON.stringify(
        {
          ok: report.ok,
          seed: o.seed,
          cluster: clusterText,
          mode,
          network: nodes?.network ?? "external",
          unsafeFailover: o.unsafeFailover,
          unsafeUnordered: o.unsafeUnordered,
          workloadMs: workloadEnd,
          counts: report.counts,
          checks: Object.fromEntries(
            Object.values(report.checks).map((c) => [
              c.name,
              {
                checked: c.checked,
                found: c.found,
                violated: c.violated,
                ...(c.pipelined === undefined ? {} : { pipelined: c.pipelined }),
              },
            ]),
          ),
          injected: Object.fromEntries(injected),
          injectedForms: Object.fromEntries(nemesis?.forms ?? []),
          faultNotes,
          converged,
          convergence,
          availability: byKind(ps),
          phases: ps,
          promises,
          violations: report.violations,
          malformed: report.malformed,
        },
        null,
        2,
      )}\n`,
    )
    const c = report.counts
    writeFileSync(
      join(o.out, "report.svg"),
      timelineSvg(
        `dht verify: ${report.ok ? "PASS" : "FAIL"}`,
        `${clusterText}; seed ${o.seed}`,
        nodes?.ids ?? endpoints.map((e) => e.id),
        nemesis?.events ?? [],
        ps,
        ops,
        workloadEnd,
        text
          .trimEnd()
          .split("\n")
          .slice(0, 40)
          .concat(c.ops === 0 ? ["(no operations)"] : []),
      ),
    )
    process.stdout.write(text)
    return report.ok ? 0 : 1
  } finally {
    process.off("SIGINT", onSignal)
    process.off("SIGTERM", onSignal)
    connections.closeAll()
    if (nodes !== undefined) {
      await nodes.stop()
      if (!o.keepData) rmSync(join(o.out, "data"), { recursive: true, force: true })
    }
  }
}

const run = async (parsed: Args.Parsed): Promise<number> => {
  const v = parsed.values
  if (parsed.positional.length > 0) {
    return Args.usageError(spec, `unexpected argument "${parsed.positional[0]}"`)
  }
  const k = Args.num(v, "nodes") ?? 5
  if (k < 1 || k > 50) return Args.usageError(spec, `--nodes must be from 1 to 50, got ${k}`)
  const timeMs = parseDuration(Args.str(v, "time") ?? "60s")
  if (timeMs === undefined || timeMs < 1000) {
    return Args.usageError(
      spec,
      `--time expects a duration of at least 1s such as 90s or 2m, got "${Args.str(v, "time")}"`,
    )
  }
  const mode = Args.str(v, "mode") ?? "ap"
  if (mode !== "ap" && mode !== "cp")
    return Args.usageError(spec, `--mode must be ap or cp, got "${mode}"`)
  const routing = Args.str(v, "routing") ?? "ring"
  if (routing !== "ring" && routing !== "chord") {
    return Args.usageError(spec, `--routing must be ring or chord, got "${routing}"`)
  }
  if (routing === "chord" && mode === "cp") {
    return Args.usageError(spec, "--mode cp needs ring routing")
  }
  const replication = Flags.replicationOf(spec, v, k)
  if (typeof replication === "number") return replication
  const { n, r, w } = replication
  const words = (Args.str(v, "nemesis") ?? "all")
    .split(",")
    .map((s) => s.trim())
    .filter(Boolean)
  let nemesis: Array<FaultKind> = []
  for (const word of words) {
    if (word === "all") nemesis = [...FAULT_KINDS]
    else if (word === "none") nemesis = []
    else if ((FAULT_KINDS as ReadonlyArray<string>).includes(word)) {
      if (!nemesis.includes(word as FaultKind)) nemesis.push(word as FaultKind)
    } else {
      return Args.usageError(
        spec,
        `--nemesis: unknown fault "${word}" (${FAULT_KINDS.join(", ")}, all, none)`,
      )
    }
  }
  const targetText = Args.str(v, "target")
  let targets: Array<Endpoint> | undefined
  if (targetText !== undefined) {
    targets = []
    for (const [i, part] of targetText.split(",").filter(Boolean).entries()) {
      const address = parseAddress(part.trim())
      if (address === undefined)
        return Args.usageError(spec, `--target: bad address "${part}" (HOST:PORT)`)
      targets.push({ id: `t${i}`, host: address.host, port: address.port })
    }
    if (targets.length === 0) return Args.usageError(spec, "--target is empty")
  }
  const promiseText = Args.str(v, "promise")
  const promises = promiseText === undefined ? undefined : parsePromises(promiseText)
  if (typeof promises === "string") return Args.usageError(spec, promises)
  const clients = Args.num(v, "clients") ?? 10
  if (clients < 1 || clients > 200)
    return Args.usageError(spec, `--clients must be from 1 to 200, got ${clients}`)
  const given = Args.str(v, "out")
  const out = given === undefined ? mkdtempSync(join(tmpdir(), "dht-verify-")) : resolve(given)
  const seed = Args.num(v, "seed") ?? Math.floor(Math.random() * 2 ** 31)
  process.stdout.write(`dht verify: output in ${out}\n`)
  return verify({
    k: targets?.length ?? k,
    timeMs,
    mode,
    routing,
    n,
    r,
    w,
    nemesis,
    seed,
    targets,
    out,
    unsafeFailover: Args.bool(v, "unsafe-failover"),
    unsafeUnordered: Args.bool(v, "unsafe-unordered"),
    clients,
    opTimeoutMs: Args.num(v, "op-timeout-ms") ?? 8000,
    quiesceMs: Args.num(v, "quiesce-timeout-ms") ?? 60_000,
    promises,
    keepData: Args.bool(v, "keep-data"),
  })
}

export const command: Args.Subcommand = {
  spec,
  run: (argv) => Args.withParsed(spec, argv, run),
}
