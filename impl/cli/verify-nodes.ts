/**
 * The node processes of `dht verify` and the faults it can inflict on them.
 *
 * K `dht node` processes started as `dht cluster` starts them (`node --import tsx
 * impl/cli/main.ts node …` from the repository root), each with an LMDB store in its own data
 * directory, so that `kill -9` and a restart on the same directory is a real crash and recovery.
 *
 * Two networks:
 *  - netns (root and iproute2): each node in its own network namespace with a cluster interface
 *    (10.211.S.i, peer traffic) and a client interface (10.212.S.i, on a bridge this process also
 *    sits on, so clients reach every node whatever the partition). A partition adds blackhole
 *    routes for the other side's cluster addresses inside each node's namespace; a one-way
 *    partition adds them on one side only (packets from A to B are dropped, B's still reach A).
 *  - loopback (otherwise): every node on 127.0.0.1 with free ports; partitions are impossible
 *    without root, so only process faults (kill, pause) and clock skew are available.
 *
 * Clock skew: with libfaketime installed, every node runs with it preloaded and reads its offset
 * from a file of its own (re-read every second), so the nemesis can move a node's wall clock
 * while it runs (monotonic clocks are left alone). Without it, skew is unavailable.
 *
 * Everything started here (processes, namespaces, bridges) is removed by `stop`, and by
 * `cleanupSync` at process exit as a last resort.
 */
import { type ChildProcess, execFileSync, spawn } from "node:child_process"
import {
  createWriteStream,
  existsSync,
  mkdirSync,
  readdirSync,
  type WriteStream,
  writeFileSync,
} from "node:fs"
import { join } from "node:path"
import { fileURLToPath } from "node:url"
import { freePorts, pingOnce } from "./net.ts"

/** The repository root, where `--import tsx` resolves and impl/cli/main.ts lives. */
const repoRoot = fileURLToPath(new URL("../../", import.meta.url))
const mainScript = join(repoRoot, "impl", "cli", "main.ts")

export interface Endpoint {
  readonly id: string
  readonly host: string
  readonly port: number
}

export type NodeState = "up" | "starting" | "killed" | "paused" | "crashed" | "external"

export type Network = "netns" | "loopback" | "external"

export interface NodesOptions {
  readonly k: number
  readonly dir: string
  readonly mode: "ap" | "cp"
  readonly routing: "ring" | "chord"
  readonly n: number
  readonly r: number
  readonly w: number
  readonly unsafeFailover: boolean
  /** Negative control: DHT_UNSAFE_UNORDERED=1, the RESP server ignores connection order (CONN-1). */
  readonly unsafeUnordered?: boolean
  /** Try network namespaces (needs root); loopback otherwise. */
  readonly wantNetns: boolean
  /** Preload libfaketime (if found) so that clocks can be skewed. */
  readonly wantSkew: boolean
  readonly readyTimeoutMs: number
  /** Called when a node exits without being told to (a crash). */
  readonly onCrash: (i: number, how: string) => void
}

// ---------------------------------------------------------------------------------------------
// Helpers

const run = (cmd: string, args: ReadonlyArray<string>): string =>
  execFileSync(cmd, args, { stdio: ["ignore", "pipe", "pipe"], encoding: "utf8" })

const tryRun = (cmd: string, args: ReadonlyArray<string>): boolean => {
  try {
    run(cmd, args)
    return true
  } catch {
    return false
  }
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms))

/** libfaketime's multithreaded library, if installed (Debian: apt-get install faketime). */
export const findFaketime = (): string | undefined => {
  const roots = ["/usr/lib", "/usr/local/lib", "/usr/lib64"]
  for (const root of roots) {
    if (!existsSync(root)) continue
    const candidates = [join(root, "faketime", "libfaketimeMT.so.1")]
    try {
      for (const sub of readdirSync(root)) {
        candidates.push(join(root, sub, "faketime", "libfaketimeMT.so.1"))
      }
    } catch {}
    for (const c of candidates) if (existsSync(c)) return c
  }
  return undefined
}

const isRoot = (): boolean => typeof process.getuid === "function" && process.getuid() === 0

// ---------------------------------------------------------------------------------------------
// Network namespaces

interface NetnsLayout {
  readonly tag: string
  readonly subnet: number
  readonly clusterBridge: string
  readonly clientBridge: string
  readonly namespaces: ReadonlyArray<string>
  readonly clusterIps: ReadonlyArray<string>
  readonly clientIps: ReadonlyArray<string>
}

const NETNS_CLIENT_PORT = 7001
const NETNS_PEER_PORT = 8001

/** Build the namespaces and bridges, or say why not (then nothing is left behind). */
const buildNetns = (k: number): NetnsLayout | string => {
  if (!isRoot()) return "not root"
  if (!tryRun("ip", ["-V"])) return "iproute2 (ip) not installed"
  const tag = String(process.pid % 100_000)
  const used = (() => {
    try {
      return run("ip", ["-o", "addr", "show"])
    } catch {
      return ""
    }
  })()
  let subnet = process.pid % 250
  for (let tries = 0; used.includes(`10.212.${subnet}.254/`) && tries < 250; tries++) {
    subnet = (subnet + 1) % 250
  }
  const layout: NetnsLayout = {
    tag,
    subnet,
    clusterBridge: `vc${tag}`,
    clientBridge: `vk${tag}`,
    namespaces: Array.from({ length: k }, (_, i) => `dv${tag}n${i}`),
    clusterIps: Array.from({ length: k }, (_, i) => `10.211.${subnet}.${i + 1}`),
    clientIps: Array.from({ length: k }, (_, i) => `10.212.${subnet}.${i + 1}`),
  }
  try {
    for (const bridge of [layout.clusterBridge, layout.clientBridge]) {
      run("ip", ["link", "add", bridge, "type", "bridge"])
      run("ip", ["link", "set", bridge, "up"])
    }
    run("ip", ["addr", "add", `10.212.${subnet}.254/24`, "dev", layout.clientBridge])
    for (let i = 0; i < k; i++) {
      const ns = layout.namespaces[i]!
      run("ip", ["netns", "add", ns])
      run("ip", ["-n", ns, "link", "set", "lo", "up"])
      const links: ReadonlyArray<readonly [string, string, string, string]> = [
        [`vc${tag}n${i}`, "c0", layout.clusterBridge, layout.clusterIps[i]!],
        [`vk${tag}n${i}`, "k0", layout.clientBridge, layout.clientIps[i]!],
      ]
      for (const [link, inside, bridge, address] of links) {
        run("ip", ["link", "add", link, "type", "veth", "peer", "name", inside, "netns", ns])
        run("ip", ["link", "set", link, "master", bridge])
        run("ip", ["link", "set", link, "up"])
        run("ip", ["-n", ns, "addr", "add", `${address}/24`, "dev", inside])
        run("ip", ["-n", ns, "link", "set", inside, "up"])
      }
    }
  } catch (e) {
    destroyNetns(layout)
    const message = e instanceof Error ? e.message.split("\n")[0] : String(e)
    return `setting up network namespaces failed (${message})`
  }
  return layout
}

const destroyNetns = (layout: NetnsLayout): void => {
  for (const ns of layout.namespaces) {
    try {
      const pids = run("ip", ["netns", "pids", ns])
      for (const pid of pids.split(/\s+/).filter(Boolean)) process.kill(Number(pid), "SIGKILL")
    } catch {}
  }
  for (const ns of layout.namespaces) tryRun("ip", ["netns", "del", ns])
  for (const bridge of [layout.clusterBridge, layout.clientBridge]) {
    tryRun("ip", ["link", "del", bridge])
  }
}

// ---------------------------------------------------------------------------------------------
// The cluster

interface Proc {
  child: ChildProcess | undefined
  state: NodeState
  /** Set when this process asked the node to exit (kill, stop): not a crash. */
  expectingExit: boolean
  starts: number
}

export class Nodes {
  readonly endpoints: ReadonlyArray<Endpoint>
  readonly ids: ReadonlyArray<string>
  readonly network: Network
  /** Why there are no namespaces (when netns was wanted). */
  readonly networkNote: string | undefined
  /** libfaketime's path when clocks can be skewed. */
  readonly faketime: string | undefined
  private readonly procs: Array<Proc>
  private readonly argsOf: ReadonlyArray<ReadonlyArray<string>>
  private readonly layout: NetnsLayout | undefined
  private readonly blocked = new Set<string>()
  private readonly logs: Array<WriteStream>
  private readonly skewFiles: ReadonlyArray<string>
  private stopped = false

  private constructor(
    private readonly options: NodesOptions,
    layout: NetnsLayout | undefined,
    networkNote: string | undefined,
    ports: ReadonlyArray<number>,
    faketime: string | undefined,
  ) {
    const k = options.k
    this.layout = layout
    this.network = layout === undefined ? "loopback" : "netns"
    this.networkNote = networkNote
    this.faketime = faketime
    this.ids = Array.from({ length: k }, (_, i) => `n${i}`)
    const host = "127.0.0.1"
    const clientPort = (i: number) => (layout ? NETNS_CLIENT_PORT : ports[i]!)
    const peerPort = (i: number) => (layout ? NETNS_PEER_PORT : ports[k + i]!)
    const peerHost = (i: number) => (layout ? layout.clusterIps[i]! : host)
    this.endpoints = this.ids.map((id, i) => ({
      id,
      host: layout ? layout.clientIps[i]! : host,
      port: clientPort(i),
    }))
    const listed = options.routing === "chord" ? this.ids.slice(0, 3) : this.ids
    const peers = listed.map((id, i) => `${id}@${peerHost(i)}:${peerPort(i)}`).join(",")
    mkdirSync(join(options.dir, "nodes"), { recursive: true })
    this.argsOf = this.ids.map((id, i) => [
      ...["--id", id, "--peers", peers, "--cluster", `verify${process.pid}`],
      ...(layout ? ["--host", "0.0.0.0", "--advertise", layout.clusterIps[i]!] : ["--host", host]),
      ...["--client-port", String(clientPort(i)), "--peer-port", String(peerPort(i))],
      ...["--data-dir", join(options.dir, "data", id), "--store", "lmdb"],
      ...["--n", String(options.n), "--r", String(options.r), "--w", String(options.w)],
      ...["--mode", options.mode, "--routing", options.routing],
      // The skew nemesis moves clocks up to 30 s either way: two nodes may differ by 60 s.
      ...["--max-clock-skew-ms", "60000"],
    ])
    this.skewFiles = this.ids.map((id) => join(options.dir, "nodes", `${id}.faketime`))
    if (faketime !== undefined) for (const f of this.skewFiles) writeFileSync(f, "+0\n")
    this.logs = this.ids.map((id) =>
      createWriteStream(join(options.dir, "nodes", `${id}.log`), { flags: "a" }),
    )
    this.procs = this.ids.map(() => ({
      child: undefined,
      state: "starting",
      expectingExit: false,
      starts: 0,
    }))
    live.add(this)
  }

  /** Lay out the network, start every node and wait until each answers PING. */
  static async start(options: NodesOptions): Promise<Nodes> {
    let layout: NetnsLayout | undefined
    let note: string | undefined
    if (options.wantNetns) {
      const built = buildNetns(options.k)
      if (typeof built === "string") note = built
      else layout = built
    }
    const ports = layout ? [] : await freePorts(2 * options.k)
    const faketime = options.wantSkew ? findFaketime() : undefined
    const nodes = new Nodes(options, layout, note, ports, faketime)
    try {
      for (let i = 0; i < options.k; i++) nodes.spawn(i)
      await Promise.all(nodes.ids.map((_, i) => nodes.waitReady(i)))
      if (options.routing === "chord") await nodes.waitChordRing()
    } catch (e) {
      await nodes.stop()
      throw e
    }
    return nodes
  }

  get k(): number {
    return this.ids.length
  }

  get canPartition(): boolean {
    return this.network === "netns"
  }

  state(i: number): NodeState {
    return this.procs[i]!.state
  }

  pid(i: number): number | undefined {
    return this.procs[i]!.child?.pid
  }

  /** How many times node i was started (1 + restarts). */
  starts(i: number): number {
    return this.procs[i]!.starts
  }

  private spawn(i: number): void {
    const proc = this.procs[i]!
    const env: NodeJS.ProcessEnv = { ...process.env }
    if (this.options.unsafeFailover) env.DHT_UNSAFE_FAILOVER = "1"
    if (this.options.unsafeUnordered === true) env.DHT_UNSAFE_UNORDERED = "1"
    if (this.faketime !== undefined) {
      env.LD_PRELOAD = this.faketime
      env.FAKETIME_TIMESTAMP_FILE = this.skewFiles[i]!
      env.FAKETIME_CACHE_DURATION = "1"
      env.FAKETIME_DONT_FAKE_MONOTONIC = "1"
    }
    const nodeArgs = ["--import", "tsx", mainScript, "node", ...this.argsOf[i]!]
    const [cmd, args] = this.layout
      ? ["ip", ["netns", "exec", this.layout.namespaces[i]!, process.execPath, ...nodeArgs]]
      : [process.execPath, nodeArgs]
    const child = spawn(cmd as string, args as Array<string>, {
      cwd: repoRoot,
      stdio: ["ignore", "pipe", "pipe"],
      env,
    })
    proc.child = child
    proc.state = "starting"
    proc.expectingExit = false
    proc.starts++
    const log = this.logs[i]!
    log.write(`=== ${new Date().toISOString()} start #${proc.starts}, pid ${child.pid}\n`)
    child.stdout?.on("data", (chunk: Buffer) => log.write(chunk))
    child.stderr?.on("data", (chunk: Buffer) => log.write(chunk))
    child.on("error", (e) => log.write(`=== could not start: ${e.message}\n`))
    child.on("exit", (code, signal) => {
      const how = signal !== null ? `killed by ${signal}` : `exited with code ${code}`
      log.write(`=== ${new Date().toISOString()} ${how}\n`)
      if (proc.child !== child) return
      if (!proc.expectingExit && !this.stopped) {
        proc.state = "crashed"
        this.options.onCrash(i, how)
      }
    })
  }

  /** Wait until node i answers PING; fail if it exits first or the bound passes. */
  async waitReady(i: number, timeoutMs = this.options.readyTimeoutMs): Promise<void> {
    const proc = this.procs[i]!
    const { host, port, id } = this.endpoints[i]!
    const deadline = Date.now() + timeoutMs
    for (let delay = 50; ; delay = Math.min(delay * 2, 500)) {
      const child = proc.child
      if (child === undefined || child.exitCode !== null || child.signalCode !== null) {
        throw new Error(`${id} exited before it was ready (see ${this.logPath(i)})`)
      }
      if (await pingOnce(host, port)) {
        proc.state = "up"
        return
      }
      if (Date.now() > deadline) {
        throw new Error(`${id} did not answer PING at ${host}:${port} within ${timeoutMs} ms`)
      }
      await sleep(delay)
    }
  }

  /**
   * Chord routing: wait until the ring is whole, i.e. walking first successors from node 0
   * visits every node once and comes back (as `dht cluster --routing chord` waits).
   */
  private async waitChordRing(): Promise<void> {
    const { fetchStatus } = await import("./status.ts")
    // A node names its successor by its advertised client address.
    const byAdvertised = new Map(
      this.endpoints.map((e, i) => [
        `${this.layout ? this.layout.clusterIps[i] : e.host}:${e.port}`,
        e,
      ]),
    )
    const deadline = Date.now() + this.options.readyTimeoutMs
    for (;;) {
      const seen = new Set<string>()
      let at: Endpoint | undefined = this.endpoints[0]
      while (at !== undefined && !seen.has(at.id)) {
        seen.add(at.id)
        try {
          const report = await fetchStatus({ host: at.host, port: at.port }, 1500)
          const next = report.chord?.next
          at = next === null || next === undefined ? undefined : byAdvertised.get(next)
        } catch {
          at = undefined
        }
      }
      if (at?.id === this.ids[0] && seen.size === this.k) return
      if (Date.now() > deadline) {
        throw new Error(
          `the Chord ring did not form in time (${seen.size} of ${this.k} on the walk)`,
        )
      }
      await sleep(500)
    }
  }

  logPath(i: number): string {
    return join(this.options.dir, "nodes", `${this.ids[i]}.log`)
  }

  /** kill -9 node i and wait for it to exit. */
  async kill(i: number): Promise<void> {
    const proc = this.procs[i]!
    const child = proc.child
    proc.expectingExit = true
    proc.state = "killed"
    if (child === undefined || child.exitCode !== null || child.signalCode !== null) return
    const exited = new Promise((resolve) => child.once("exit", resolve))
    child.kill("SIGKILL")
    await Promise.race([exited, sleep(5000)])
  }

  /** Start node i again on the same data directory and wait until it answers PING. */
  async restart(i: number): Promise<void> {
    const proc = this.procs[i]!
    if (proc.state === "paused") this.resume(i)
    if (
      proc.child !== undefined &&
      proc.child.exitCode === null &&
      proc.child.signalCode === null
    ) {
      await this.kill(i)
    }
    this.spawn(i)
    await this.waitReady(i)
  }

  pause(i: number): void {
    const proc = this.procs[i]!
    if (proc.state !== "up") return
    proc.child?.kill("SIGSTOP")
    proc.state = "paused"
  }

  resume(i: number): void {
    const proc = this.procs[i]!
    if (proc.state !== "paused") return
    proc.child?.kill("SIGCONT")
    proc.state = "up"
  }

  private block(from: number, to: number): void {
    const layout = this.layout
    if (layout === undefined) throw new Error("partitions need network namespaces")
    const edge = `${from}>${to}`
    if (this.blocked.has(edge)) return
    run("ip", [
      "-n",
      layout.namespaces[from]!,
      "route",
      "add",
      "blackhole",
      `${layout.clusterIps[to]}/32`,
    ])
    this.blocked.add(edge)
  }

  /** Cut the cluster network between every pair of groups (clients still reach every node). */
  partition(groups: ReadonlyArray<ReadonlyArray<number>>): void {
    for (const [g, group] of groups.entries()) {
      for (const other of groups.slice(g + 1)) {
        for (const a of group) {
          for (const b of other) {
            this.block(a, b)
            this.block(b, a)
          }
        }
      }
    }
  }

  /** Packets from `from` to `to` are dropped; `to`'s packets still reach `from`. */
  oneWay(from: number, to: number): void {
    this.block(from, to)
  }

  /** Remove every partition. */
  heal(): void {
    const layout = this.layout
    if (layout === undefined) return
    for (const edge of [...this.blocked]) {
      const [from, to] = edge.split(">").map(Number) as [number, number]
      tryRun("ip", [
        "-n",
        layout.namespaces[from]!,
        "route",
        "del",
        "blackhole",
        `${layout.clusterIps[to]}/32`,
      ])
      this.blocked.delete(edge)
    }
  }

  get partitioned(): boolean {
    return this.blocked.size > 0
  }

  /** Move node i's wall clock by `seconds` (0: back to true time); libfaketime only. */
  skew(i: number, seconds: number): void {
    if (this.faketime === undefined) throw new Error("clock skew needs libfaketime")
    const s = Math.round(seconds)
    writeFileSync(this.skewFiles[i]!, `${s >= 0 ? "+" : ""}${s}\n`)
  }

  /** SIGTERM every node (SIGKILL after a grace period), then remove the namespaces. */
  async stop(graceMs = 3000): Promise<void> {
    this.stopped = true
    this.heal()
    await Promise.all(
      this.procs.map(async (proc) => {
        const child = proc.child
        if (child === undefined || child.exitCode !== null || child.signalCode !== null) return
        proc.expectingExit = true
        const exited = new Promise((resolve) => child.once("exit", resolve))
        child.kill("SIGCONT")
        child.kill("SIGTERM")
        const timer = setTimeout(() => child.kill("SIGKILL"), graceMs)
        await Promise.race([exited, sleep(graceMs + 3000)])
        clearTimeout(timer)
      }),
    )
    await Promise.all(this.logs.map((log) => new Promise((resolve) => log.end(resolve))))
    this.cleanupSync()
  }

  /** Kill what is left and remove the namespaces and bridges (idempotent, synchronous). */
  cleanupSync(): void {
    this.stopped = true
    for (const proc of this.procs) {
      const child = proc.child
      if (child !== undefined && child.exitCode === null && child.signalCode === null) {
        proc.expectingExit = true
        child.kill("SIGKILL")
      }
    }
    if (this.layout !== undefined) destroyNetns(this.layout)
    live.delete(this)
  }
}

const live = new Set<Nodes>()
process.on("exit", () => {
  for (const nodes of live) nodes.cleanupSync()
})
