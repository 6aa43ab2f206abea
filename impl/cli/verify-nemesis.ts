/**
 * The nemesis of `dht verify`: a seeded schedule of fault windows, one at a time, each followed
 * by a healthy gap, and their execution against the node processes (impl/cli/verify-nodes.ts).
 *
 *  - kill:          kill -9, then restart on the same data directory; cycles through one node,
 *                   several nodes at once (a minority) and every node (acknowledged writes must
 *                   survive all of them);
 *  - pause:         SIGSTOP, then SIGCONT (one node, or two);
 *  - partition:     the cluster network cut in two (network namespaces only);
 *  - oneway:        packets from one node to another dropped, not the reverse (namespaces only);
 *  - skew:          one or two nodes' wall clocks moved by seconds (libfaketime only);
 *  - forward-pause: the KV-9 schedule: pause a key's first replica A, write the key through a
 *                   node X outside its preference list (X forwards to A, waits, fails over to the
 *                   next replica, which acknowledges), write it again (acknowledged), resume A.
 *                   A store that lets A run its stale copy now loses the second write.
 *
 * Every fault is recorded as a start and an end event (nemesis.jsonl and in memory), from which
 * the report derives the fault phases and their availability.
 */
import { createWriteStream, type WriteStream } from "node:fs"
import { NodeId } from "../core/ids.ts"
import * as Ring from "../core/ring.ts"
import { Prng } from "../sim/prng.ts"
import { fetchStatus } from "./status.ts"
import type { Nodes } from "./verify-nodes.ts"
import type { Runner } from "./verify-workload.ts"

export const FAULT_KINDS = [
  "kill",
  "pause",
  "partition",
  "oneway",
  "skew",
  "forward-pause",
] as const
export type FaultKind = (typeof FAULT_KINDS)[number]

export interface Window {
  readonly kind: FaultKind
  /** Planned start, ms since the run started (a window starts later if the one before ran long). */
  readonly at: number
  /** How long the fault is held (forward-pause: as long as its writes take). */
  readonly holdMs: number
  /** Which form of the fault (kill: one, several, all; pause: one, two). */
  readonly variant: number
}

export interface NemesisEvent {
  /** ms since the run started. */
  readonly at: number
  readonly kind: FaultKind | "crash" | "heal" | "skipped"
  readonly phase: "start" | "end" | "info"
  /** Window number (start and end of one fault share it). */
  readonly window: number
  readonly nodes: ReadonlyArray<string>
  readonly text: string
}

/** The seeded plan: windows cycling through the kinds (shuffled), until `timeMs`. */
export const schedule = (
  kinds: ReadonlyArray<FaultKind>,
  seed: number,
  timeMs: number,
): Array<Window> => {
  if (kinds.length === 0) return []
  const rng = new Prng(seed ^ 0x6e656d)
  const order = [...kinds]
  for (let i = order.length - 1; i > 0; i--) {
    const j = rng.int(i + 1)
    ;[order[i], order[j]] = [order[j]!, order[i]!]
  }
  const between = (lo: number, hi: number) => lo + rng.int(hi - lo + 1)
  const windows: Array<Window> = []
  // Each kind cycles through its forms from a seeded starting point, so that short runs with
  // different seeds meet different forms (kill: one node, several, all).
  const counts = new Map<FaultKind, number>(order.map((kind) => [kind, rng.int(6)]))
  // A healthy start (the baseline), and room at the end for the last fault to be undone.
  let t = Math.min(3000, Math.round(timeMs * 0.1))
  // Short runs get shorter holds and gaps, so that every kind gets one window if it can.
  const budget = (timeMs - 1000 - t) / order.length
  const scale = Math.max(0.3, Math.min(1, budget / 12_000))
  const scaled = (lo: number, hi: number, min: number) =>
    Math.max(min, Math.round(between(lo, hi) * scale))
  for (let i = 0; ; i++) {
    const kind = order[i % order.length]!
    const variant = counts.get(kind) ?? 0
    counts.set(kind, variant + 1)
    const hold =
      kind === "kill"
        ? variant % 3 === 2
          ? scaled(2000, 3500, 1500)
          : scaled(3000, 6000, 2000)
        : kind === "pause"
          ? scaled(3000, 7000, 2000)
          : kind === "forward-pause"
            ? 9000
            : scaled(4000, 8000, 2500)
    if (t + hold > timeMs - 1000) break
    windows.push({ kind, at: t, holdMs: hold, variant })
    t += hold + scaled(2000, 4000, 1500)
  }
  return windows
}

export interface NemesisOptions {
  readonly nodes: Nodes
  readonly runner: Runner
  readonly windows: ReadonlyArray<Window>
  readonly seed: number
  readonly eventsPath: string
  readonly now: () => number
  /** Stop starting faults at this time. */
  readonly until: number
  readonly stopping: () => boolean
  readonly n: number
  /** Called for every event (progress display). */
  readonly onEvent: (e: NemesisEvent) => void
  /** The probe's per-write timeout: long enough for a forwarder's failover. */
  readonly probeTimeoutMs: number
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms))

export class Nemesis {
  readonly events: Array<NemesisEvent> = []
  /** Faults in force now, by window: their kind and description (for the progress line). */
  readonly active = new Map<number, { readonly kind: FaultKind; readonly text: string }>()
  /** Injected faults per kind. */
  readonly injected = new Map<FaultKind, number>()
  /** Injected faults per form ("kill all", "pause one", …). */
  readonly forms = new Map<string, number>()
  readonly probeKeys: Array<string> = []
  private readonly out: WriteStream
  private readonly rng: Prng
  private probeSerial = 0
  private probeKeySerial = 0

  constructor(private readonly o: NemesisOptions) {
    this.out = createWriteStream(o.eventsPath)
    this.rng = new Prng(o.seed ^ 0x6b696c6c)
  }

  private event(e: Omit<NemesisEvent, "at">): NemesisEvent {
    const full: NemesisEvent = { at: this.o.now(), ...e }
    this.events.push(full)
    this.out.write(`${JSON.stringify(full)}\n`)
    if (e.phase === "start" && e.kind !== "crash" && e.kind !== "heal" && e.kind !== "skipped") {
      this.active.set(e.window, { kind: e.kind, text: e.text })
    }
    if (e.phase === "end") this.active.delete(e.window)
    this.o.onEvent(full)
    return full
  }

  /** A node exited on its own: recorded, restarted at the next window or at the heal. */
  crashed(i: number, how: string): void {
    const id = this.o.nodes.ids[i]!
    this.event({ kind: "crash", phase: "info", window: -1, nodes: [id], text: `${id} ${how}` })
  }

  private pick<A>(xs: ReadonlyArray<A>, count: number): Array<A> {
    const pool = [...xs]
    const out: Array<A> = []
    while (out.length < count && pool.length > 0)
      out.push(pool.splice(this.rng.int(pool.length), 1)[0]!)
    return out
  }

  private up(): Array<number> {
    return this.o.nodes.ids.map((_, i) => i).filter((i) => this.o.nodes.state(i) === "up")
  }

  private ids(is: ReadonlyArray<number>): Array<string> {
    return is.map((i) => this.o.nodes.ids[i]!)
  }

  /** Hold a fault for `ms`, waking early when the run is stopped. */
  private async hold(ms: number): Promise<void> {
    const end = this.o.now() + ms
    while (this.o.now() < end && !this.o.stopping()) await sleep(Math.min(200, end - this.o.now()))
  }

  private count(kind: FaultKind, form = ""): void {
    this.injected.set(kind, (this.injected.get(kind) ?? 0) + 1)
    const name = form === "" ? kind : `${kind} ${form}`
    this.forms.set(name, (this.forms.get(name) ?? 0) + 1)
  }

  /** Run the schedule; every fault is undone before the next starts and before this returns. */
  async run(): Promise<void> {
    for (const [w, window] of this.o.windows.entries()) {
      while (this.o.now() < window.at && !this.o.stopping()) {
        await sleep(Math.min(200, window.at - this.o.now()))
      }
      if (this.o.stopping() || this.o.now() + Math.min(window.holdMs, 2000) > this.o.until) break
      await this.restartCrashed(w)
      try {
        await this.inject(w, window)
      } catch (e) {
        const text = `${window.kind} failed: ${e instanceof Error ? e.message : String(e)}`
        this.event({ kind: "skipped", phase: "info", window: w, nodes: [], text })
        await this.healAll()
      }
    }
  }

  private async restartCrashed(w: number): Promise<void> {
    const nodes = this.o.nodes
    const crashed = nodes.ids.map((_, i) => i).filter((i) => nodes.state(i) === "crashed")
    for (const i of crashed) {
      this.event({
        kind: "heal",
        phase: "info",
        window: w,
        nodes: this.ids([i]),
        text: `restarting crashed ${nodes.ids[i]}`,
      })
      await nodes.restart(i).catch(() => {})
    }
  }

  private async inject(w: number, window: Window): Promise<void> {
    const nodes = this.o.nodes
    const up = this.up()
    switch (window.kind) {
      case "kill": {
        const form = window.variant % 3
        const count =
          form === 0 ? 1 : form === 1 ? Math.max(1, Math.floor((nodes.k - 1) / 2)) : nodes.k
        const victims = form === 2 ? nodes.ids.map((_, i) => i) : this.pick(up, count)
        const what = form === 2 ? "all nodes" : victims.length > 1 ? "several nodes" : "one node"
        this.count("kill", form === 2 ? "all" : victims.length > 1 ? "several" : "one")
        this.event({
          kind: "kill",
          phase: "start",
          window: w,
          nodes: this.ids(victims),
          text: `kill -9 ${what}: ${this.ids(victims).join(", ")}`,
        })
        await Promise.all(victims.map((i) => nodes.kill(i)))
        await this.hold(window.holdMs)
        const restarted = await Promise.allSettled(victims.map((i) => nodes.restart(i)))
        const failed = restarted.flatMap((r, j) =>
          r.status === "rejected" ? [this.ids([victims[j]!])[0]] : [],
        )
        this.event({
          kind: "kill",
          phase: "end",
          window: w,
          nodes: this.ids(victims),
          text:
            failed.length === 0
              ? `restarted ${this.ids(victims).join(", ")}`
              : `restarted; ${failed.join(", ")} did not come back`,
        })
        return
      }
      case "pause": {
        const victims = this.pick(up, window.variant % 2 === 1 && nodes.k >= 4 ? 2 : 1)
        this.count("pause", victims.length > 1 ? "two" : "one")
        this.event({
          kind: "pause",
          phase: "start",
          window: w,
          nodes: this.ids(victims),
          text: `SIGSTOP ${this.ids(victims).join(", ")}`,
        })
        for (const i of victims) nodes.pause(i)
        await this.hold(window.holdMs)
        for (const i of victims) nodes.resume(i)
        this.event({
          kind: "pause",
          phase: "end",
          window: w,
          nodes: this.ids(victims),
          text: `SIGCONT ${this.ids(victims).join(", ")}`,
        })
        return
      }
      case "partition": {
        const all = nodes.ids.map((_, i) => i)
        const minority = 1 + this.rng.int(Math.max(1, Math.floor((nodes.k - 1) / 2)))
        const island = this.pick(all, minority).sort((a, b) => a - b)
        const rest = all.filter((i) => !island.includes(i))
        this.count("partition")
        const text = `partition ${this.ids(island).join(",")} | ${this.ids(rest).join(",")}`
        this.event({ kind: "partition", phase: "start", window: w, nodes: this.ids(island), text })
        nodes.partition([island, rest])
        await this.hold(window.holdMs)
        nodes.heal()
        this.event({
          kind: "partition",
          phase: "end",
          window: w,
          nodes: this.ids(island),
          text: "healed",
        })
        return
      }
      case "oneway": {
        const [from, to] = this.pick(
          nodes.ids.map((_, i) => i),
          2,
        ) as [number, number]
        this.count("oneway")
        const text = `one-way: ${nodes.ids[from]} -> ${nodes.ids[to]} dropped`
        this.event({ kind: "oneway", phase: "start", window: w, nodes: this.ids([from, to]), text })
        nodes.oneWay(from, to)
        await this.hold(window.holdMs)
        nodes.heal()
        this.event({
          kind: "oneway",
          phase: "end",
          window: w,
          nodes: this.ids([from, to]),
          text: "healed",
        })
        return
      }
      case "skew": {
        const victims = this.pick(
          nodes.ids.map((_, i) => i),
          1 + this.rng.int(2),
        )
        const offsets = [-30, -10, -3, -1, 1, 3, 10, 30]
        const skews = victims.map((i) => [i, offsets[this.rng.int(offsets.length)]!] as const)
        this.count("skew")
        const text = `clock skew ${skews.map(([i, s]) => `${nodes.ids[i]} ${s > 0 ? "+" : ""}${s}s`).join(", ")}`
        this.event({ kind: "skew", phase: "start", window: w, nodes: this.ids(victims), text })
        for (const [i, s] of skews) nodes.skew(i, s)
        await this.hold(window.holdMs)
        for (const i of victims) nodes.skew(i, 0)
        this.event({
          kind: "skew",
          phase: "end",
          window: w,
          nodes: this.ids(victims),
          text: "clocks back",
        })
        return
      }
      case "forward-pause":
        return this.forwardPause(w)
    }
  }

  /** The preference list of `key` as the ring of the first node that answers computes it. */
  private async preferenceList(key: string): Promise<ReadonlyArray<string> | undefined> {
    for (const i of this.up()) {
      const e = this.o.nodes.endpoints[i]!
      try {
        const report = await fetchStatus({ host: e.host, port: e.port }, 2000)
        const members = report.members.filter((m) => m.status === "up" || m.status === "leaving")
        const first = members[0]
        if (first === undefined) return undefined
        const tokensPerNode = Math.max(1, Math.round(first.tokens / first.weight))
        const ring = Ring.make(
          members.map((m) => ({ id: NodeId(m.id), weight: m.weight })),
          tokensPerNode,
        )
        return Ring.preferenceList(ring, key, report.n)
      } catch {}
    }
    return undefined
  }

  /**
   * The KV-9 schedule: pause a fresh key's first replica A; SET the key through a node X that is
   * no replica (X forwards to A, still believed up, then fails over to the next replica once its
   * failure detector judges A down); SET it again once acknowledged; resume A. The second write
   * must survive A's backlog.
   */
  private async forwardPause(w: number): Promise<void> {
    const nodes = this.o.nodes
    const index = new Map(nodes.ids.map((id, i) => [id, i]))
    let key: string | undefined
    let a: number | undefined
    let x: number | undefined
    for (let tries = 0; tries < 50 && key === undefined; tries++) {
      const candidate = `probe:${this.probeKeySerial++}`
      const replicas = await this.preferenceList(candidate)
      if (replicas === undefined) break
      const first = index.get(replicas[0]!)
      const outsiders = this.up().filter((i) => !replicas.includes(nodes.ids[i]!))
      if (first === undefined || nodes.state(first) !== "up" || outsiders.length === 0) continue
      key = candidate
      a = first
      x = outsiders[this.rng.int(outsiders.length)]!
    }
    if (key === undefined || a === undefined || x === undefined) {
      this.event({
        kind: "skipped",
        phase: "info",
        window: w,
        nodes: [],
        text: "forward-pause: no key with an up first replica and an up node outside its replicas",
      })
      return
    }
    this.probeKeys.push(key)
    const [idA, idX] = [nodes.ids[a]!, nodes.ids[x]!]
    this.count("forward-pause")
    this.event({
      kind: "forward-pause",
      phase: "start",
      window: w,
      nodes: [idA],
      text: `SIGSTOP ${idA} (first replica of ${key}); SET ${key} through ${idX}`,
    })
    nodes.pause(a)
    const via = nodes.endpoints[x]!
    const timeout = this.o.probeTimeoutMs
    try {
      await sleep(200)
      const first = await this.o.runner.run(
        "probe",
        via,
        { _tag: "Set", key, value: `probe.${this.probeSerial++}` },
        timeout,
      )
      if (first.op.outcome === "ok") {
        await this.o.runner.run(
          "probe",
          via,
          { _tag: "Set", key, value: `probe.${this.probeSerial++}` },
          timeout,
        )
      }
      await sleep(500)
    } finally {
      nodes.resume(a)
    }
    this.event({
      kind: "forward-pause",
      phase: "end",
      window: w,
      nodes: [idA],
      text: `SIGCONT ${idA}`,
    })
    // Give A time to work through its backlog while nothing else writes the key.
    await this.hold(2000)
  }

  /** Undo every fault: resume, heal the network, reset clocks, restart dead nodes. */
  async healAll(): Promise<void> {
    const nodes = this.o.nodes
    const changed: Array<string> = []
    for (const [i, id] of nodes.ids.entries()) {
      if (nodes.state(i) === "paused") {
        nodes.resume(i)
        changed.push(`SIGCONT ${id}`)
      }
    }
    if (nodes.partitioned) {
      nodes.heal()
      changed.push("network healed")
    }
    if (nodes.faketime !== undefined) for (const i of nodes.ids.keys()) nodes.skew(i, 0)
    const dead = nodes.ids
      .map((_, i) => i)
      .filter((i) => ["killed", "crashed"].includes(nodes.state(i)))
    const restarted = await Promise.allSettled(dead.map((i) => nodes.restart(i)))
    restarted.forEach((r, j) => {
      const id = nodes.ids[dead[j]!]!
      changed.push(r.status === "fulfilled" ? `restarted ${id}` : `${id} did not restart`)
    })
    for (const [w, fault] of [...this.active]) {
      this.event({
        kind: fault.kind,
        phase: "end",
        window: w,
        nodes: [],
        text: "ended by the heal",
      })
    }
    if (changed.length > 0) {
      this.event({ kind: "heal", phase: "info", window: -1, nodes: [], text: changed.join("; ") })
    }
  }

  close(): Promise<void> {
    return new Promise((resolve) => this.out.end(resolve))
  }
}
