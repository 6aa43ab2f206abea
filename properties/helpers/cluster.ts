/**
 * Real node processes for end-to-end tests: free ports, temporary data directories, K `dht node`
 * processes started exactly as a user would (`node --import tsx impl/cli/main.ts node …`), a
 * bounded poll-until helper instead of sleeps, and raw sockets for feeding nodes bad bytes.
 *
 * Every process started here is registered and killed by `stopAll` (call it in `after`, which
 * node:test runs even when tests fail), and as a last resort when the test process exits.
 */
import { type ChildProcess, spawn } from "node:child_process"
import { mkdtempSync, rmSync } from "node:fs"
import * as net from "node:net"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { fileURLToPath } from "node:url"
import { Redis } from "ioredis"
import { freePorts } from "../../impl/cli/net.ts"

export { freePorts }

const repoRoot = fileURLToPath(new URL("../../", import.meta.url))
const mainScript = join(repoRoot, "impl", "cli", "main.ts")
const host = "127.0.0.1"

// ---------------------------------------------------------------------------------------------
// Ports, directories, polling

const tempDirs: Array<string> = []

/** A fresh directory under the OS temp dir, removed by `stopAll`. */
export const tempDir = (prefix = "dht-e2e-"): string => {
  const dir = mkdtempSync(join(tmpdir(), prefix))
  tempDirs.push(dir)
  return dir
}

/** Poll `check` until it returns a value other than undefined/false, or fail after timeoutMs. */
export const pollUntil = async <A>(
  what: string,
  check: () => Promise<A | undefined | false> | A | undefined | false,
  { timeoutMs = 15_000, intervalMs = 50 }: { timeoutMs?: number; intervalMs?: number } = {},
): Promise<A> => {
  const deadline = Date.now() + timeoutMs
  let lastError: unknown
  for (;;) {
    try {
      const value = await check()
      if (value !== undefined && value !== false) return value
    } catch (e) {
      lastError = e
    }
    if (Date.now() > deadline) {
      const detail = lastError instanceof Error ? ` (last error: ${lastError.message})` : ""
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${detail}`)
    }
    await new Promise((resolve) => setTimeout(resolve, intervalMs))
    intervalMs = Math.min(intervalMs * 2, 500)
  }
}

// ---------------------------------------------------------------------------------------------
// Raw sockets

/** The error message a client call ends with, or undefined when it succeeds. */
export const errorOf = async (op: Promise<unknown>): Promise<string | undefined> => {
  try {
    await op
    return undefined
  } catch (e) {
    return e instanceof Error ? e.message : String(e)
  }
}

export interface Exchange {
  /** Everything received, latin1. */
  readonly received: string
  /** The peer closed (or reset) the connection before the timeout. */
  readonly closed: boolean
}

/**
 * Connect, send `bytes`, and collect what comes back until the server closes the connection or
 * `until(received)` holds or `timeoutMs` passes.
 */
export const exchange = (
  port: number,
  bytes: Uint8Array | string,
  {
    timeoutMs = 5000,
    until,
    at = host,
  }: { timeoutMs?: number; until?: (received: string) => boolean; at?: string } = {},
): Promise<Exchange> =>
  new Promise((resolve) => {
    const socket = net.connect({ host: at, port })
    let received = ""
    let done = false
    const finish = (closed: boolean) => {
      if (done) return
      done = true
      clearTimeout(timer)
      socket.destroy()
      resolve({ received, closed })
    }
    const timer = setTimeout(() => finish(false), timeoutMs)
    socket.on("connect", () => socket.write(bytes))
    socket.on("data", (chunk) => {
      received += chunk.toString("latin1")
      if (until?.(received)) finish(false)
    })
    socket.on("error", () => finish(true))
    socket.on("close", () => finish(true))
  })

/** A command as a client sends it: a RESP array of bulk strings. */
export const resp = (...args: ReadonlyArray<string>): string =>
  `*${args.length}\r\n${args.map((a) => `$${Buffer.byteLength(a, "latin1")}\r\n${a}\r\n`).join("")}`

/** One command over a fresh connection, waiting at most a second for `until`; what came back. */
const probe = async (
  port: number,
  at: string,
  until: (received: string) => boolean,
  ...args: ReadonlyArray<string>
): Promise<string> => (await exchange(port, resp(...args), { timeoutMs: 1000, until, at })).received

/** RESP PING over a fresh connection; true on +PONG. */
export const ping = async (port: number, at: string = host): Promise<boolean> =>
  (await probe(port, at, (r) => r.includes("\r\n"), "PING")).startsWith("+PONG")

/**
 * Does the node at `port` serve (INFO `loading:0`)? A restarted or joining node answers PING at
 * once but refuses requests until a peer confirmed its store and its view caught up.
 */
export const serving = async (port: number, at: string = host): Promise<boolean> =>
  (await probe(port, at, (r) => r.includes("loading:"), "INFO", "persistence")).includes(
    "loading:0",
  )

// ---------------------------------------------------------------------------------------------
// Node processes

export interface NodeSpec {
  readonly id: string
  readonly clientPort: number
  readonly peerPort: number
  readonly dataDir: string
}

export interface RunningNode extends NodeSpec {
  process: ChildProcess
  /** The node's output so far (for failure messages). */
  log: string
}

export interface ClusterOptions {
  readonly nodes: number
  readonly store?: "lmdb" | "memory"
  readonly n?: number
  readonly r?: number
  readonly w?: number
  readonly cluster?: string
  /** Extra flags for every node. */
  readonly args?: ReadonlyArray<string>
  /**
   * "chord": Chord routing; every node gets only the first three nodes as seeds (--peers), and
   * a node added later joins through them without --join.
   */
  readonly routing?: "ring" | "chord"
  /** How long each node may take to answer PING (many processes start slowly on small hosts). */
  readonly readyTimeoutMs?: number
  /**
   * Where peers reach every node: its --advertise host and its host in --peers (default
   * 127.0.0.1, where the nodes listen). A test that relays peer traffic through listeners of
   * its own on another loopback address (same ports) sets it, e.g. to delay what a node sends.
   */
  readonly peerHost?: string
}

const running = new Set<ChildProcess>()

process.on("exit", () => {
  for (const child of running) child.kill("SIGKILL")
})

export class Cluster {
  readonly nodes: Array<RunningNode>
  private readonly argsOf: (node: NodeSpec) => ReadonlyArray<string>
  private readonly root: string
  private readonly options: ClusterOptions

  private constructor(
    nodes: Array<RunningNode>,
    argsOf: (node: NodeSpec) => ReadonlyArray<string>,
    root: string,
    options: ClusterOptions,
  ) {
    this.nodes = nodes
    this.argsOf = argsOf
    this.root = root
    this.options = options
  }

  /** Start K nodes and wait until each answers PING. */
  static async start(options: ClusterOptions): Promise<Cluster> {
    const k = options.nodes
    const ports = await freePorts(2 * k)
    const root = tempDir()
    const specs: Array<NodeSpec> = Array.from({ length: k }, (_, i) => ({
      id: `n${i}`,
      clientPort: ports[i]!,
      peerPort: ports[k + i]!,
      dataDir: join(root, `n${i}`),
    }))
    const chord = options.routing === "chord"
    const peers = (chord ? specs.slice(0, 3) : specs)
      .map((s) => `${s.id}@${options.peerHost ?? host}:${s.peerPort}`)
      .join(",")
    const n = options.n ?? Math.min(3, k)
    const argsOf = (s: NodeSpec): ReadonlyArray<string> => [
      ...["--id", s.id, "--host", host, "--peers", peers],
      ...["--client-port", String(s.clientPort), "--peer-port", String(s.peerPort)],
      ...["--data-dir", s.dataDir, "--store", options.store ?? "lmdb"],
      ...["--n", String(n), "--r", String(options.r ?? Math.min(2, n))],
      ...["--w", String(options.w ?? Math.min(2, n))],
      ...["--cluster", options.cluster ?? "e2e"],
      ...(chord ? ["--routing", "chord"] : []),
      ...(options.peerHost === undefined ? [] : ["--advertise", options.peerHost]),
      ...(options.args ?? []),
    ]
    const cluster = new Cluster(
      specs.map((s) => ({ ...s, process: undefined as unknown as ChildProcess, log: "" })),
      argsOf,
      root,
      options,
    )
    for (let i = 0; i < k; i++) cluster.spawn(i)
    await Promise.all(cluster.nodes.map((_, i) => cluster.waitReady(i)))
    return cluster
  }

  /**
   * Start one more node with `--join` (the boot members as seeds, same flags otherwise) and
   * wait until it answers PING; it is `nodes[result]`.
   */
  async join(): Promise<number> {
    const [clientPort, peerPort] = await freePorts(2)
    const i = this.nodes.length
    const spec: NodeSpec = {
      id: `n${i}`,
      clientPort: clientPort!,
      peerPort: peerPort!,
      dataDir: join(this.root, `n${i}`),
    }
    this.nodes.push({ ...spec, process: undefined as unknown as ChildProcess, log: "" })
    const chord = this.options.routing === "chord"
    this.spawn(i, [...this.argsOf(spec), ...(chord ? [] : ["--join"])])
    await this.waitReady(i)
    return i
  }

  private spawn(i: number, args?: ReadonlyArray<string>): void {
    const node = this.nodes[i]!
    const child = spawn(
      process.execPath,
      ["--import", "tsx", mainScript, "node", ...(args ?? this.argsOf(node))],
      { cwd: repoRoot, stdio: ["ignore", "pipe", "pipe"] },
    )
    running.add(child)
    child.on("exit", () => running.delete(child))
    node.process = child
    node.log = ""
    const append = (chunk: Buffer) => {
      node.log = (node.log + chunk.toString("utf8")).slice(-20_000)
    }
    child.stdout?.on("data", append)
    child.stderr?.on("data", append)
  }

  /** Wait until node i answers PING; fail early, with its log, if it exits. */
  async waitReady(i: number, timeoutMs = this.options.readyTimeoutMs ?? 30_000): Promise<void> {
    const node = this.nodes[i]!
    await pollUntil(
      `${node.id} to answer PING`,
      async () => {
        if (node.process.exitCode !== null || node.process.signalCode !== null) {
          throw new Error(`${node.id} exited before it was ready:\n${node.log}`)
        }
        if (!(await ping(node.clientPort))) return false
        // It serves once a peer confirmed it: with no other node running (a whole cluster
        // started again one node at a time) there is none yet, and answering PING is ready.
        const othersRunning = this.nodes.some(
          (n, k) => k !== i && n.process?.exitCode === null && n.process.signalCode === null,
        )
        return !othersRunning || serving(node.clientPort)
      },
      { timeoutMs },
    ).catch((e: Error) => {
      throw new Error(`${e.message}\n--- ${node.id} log ---\n${node.log}`)
    })
  }

  /** Send `signal` to node i and wait for it to exit. */
  async kill(i: number, signal: NodeJS.Signals = "SIGKILL"): Promise<void> {
    const child = this.nodes[i]!.process
    if (child.exitCode !== null || child.signalCode !== null) return
    const exited = new Promise((resolve) => child.once("exit", resolve))
    child.kill(signal)
    await exited
  }

  /** Start node i again with the same flags (and data directory), and wait until ready. */
  async restart(i: number): Promise<void> {
    await this.kill(i)
    this.spawn(i)
    await this.waitReady(i)
  }

  /** SIGTERM every node, SIGKILL after a grace period. */
  async stop(graceMs = 3000): Promise<void> {
    await Promise.all(
      this.nodes.map(async (node) => {
        const child = node.process
        if (child.exitCode !== null || child.signalCode !== null) return
        const exited = new Promise((resolve) => child.once("exit", resolve))
        child.kill("SIGTERM")
        const timer = setTimeout(() => child.kill("SIGKILL"), graceMs)
        await exited
        clearTimeout(timer)
      }),
    )
  }
}

/** Kill every process started here and remove the temporary directories. */
export const stopAll = async (clusters: ReadonlyArray<Cluster | undefined>): Promise<void> => {
  await Promise.all(clusters.map((c) => c?.stop()))
  for (const child of running) child.kill("SIGKILL")
  for (const dir of tempDirs.splice(0)) rmSync(dir, { recursive: true, force: true })
}

/**
 * An ioredis client that gives up instead of reconnecting forever (nodes get killed in these
 * tests); it is added to `registry` so that the suite can disconnect everything in `after`.
 */
export const connectClient = (
  port: number,
  registry: Array<Redis>,
  commandTimeoutMs = 15_000,
  at: string = host,
): Redis => {
  const client = new Redis({
    host: at,
    port,
    retryStrategy: () => null,
    maxRetriesPerRequest: 0,
    commandTimeout: commandTimeoutMs,
  })
  client.on("error", () => {})
  registry.push(client)
  return client
}
