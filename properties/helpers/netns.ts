/**
 * Node processes on separate network hosts, for partition tests with real sockets: each node
 * runs in its own Linux network namespace (`ip netns`) with two interfaces,
 *
 *   c0: the cluster network (peer traffic), 10.201.S.(i+1), on bridge A;
 *   k0: the client network, 10.202.S.(i+1), on a client bridge this test process also sits on
 *       (10.202.S.254), so the test can talk to every node whatever the partition.
 *
 * A partition moves the cluster interfaces of one group onto a second bridge B: two islands
 * that cannot reach each other, while clients still reach every node. Heal moves them back.
 * S is derived from the process id, and every name carries it, so suites can run side by side.
 *
 * Needs root (CAP_NET_ADMIN) and iproute2. Everything created here (processes, namespaces,
 * bridges) is removed by `destroy`, and at process exit as a last resort. Nodes use the memory
 * store: these tests are about the network, not the disk.
 */
import { type ChildProcess, execFileSync, spawn } from "node:child_process"
import { join } from "node:path"
import { fileURLToPath } from "node:url"
import { pollUntil, ping } from "./cluster.ts"

const repoRoot = fileURLToPath(new URL("../../", import.meta.url))
const mainScript = join(repoRoot, "impl", "cli", "main.ts")

const ip = (...args: ReadonlyArray<string>): void => {
  execFileSync("ip", args, { stdio: ["ignore", "ignore", "pipe"] })
}

const CLIENT_PORT = 7001
const PEER_PORT = 8001

export interface NetnsNode {
  readonly id: string
  readonly ns: string
  /** Root-side end of the node's cluster interface (moved between bridges to partition). */
  readonly clusterLink: string
  readonly clusterIp: string
  readonly clientIp: string
  readonly clientPort: number
  process: ChildProcess
  log: string
}

const live = new Set<NetnsCluster>()
process.on("exit", () => {
  for (const c of live) c.destroySync()
})

let clusters = 0

export class NetnsCluster {
  readonly nodes: Array<NetnsNode> = []
  private readonly tag: string
  private readonly subnet: number
  private readonly bridgeA: string
  private readonly bridgeB: string
  private readonly bridgeK: string

  private constructor() {
    const serial = clusters++
    this.tag = `${process.pid % 100_000}${serial}`
    this.subnet = (process.pid * 7 + serial) % 250
    this.bridgeA = `dA${this.tag}`
    this.bridgeB = `dB${this.tag}`
    this.bridgeK = `dK${this.tag}`
  }

  /** K nodes, each in its own namespace, started with `args` and waited for (PING). */
  static async start(k: number, args: ReadonlyArray<string>): Promise<NetnsCluster> {
    const c = new NetnsCluster()
    live.add(c)
    c.network(k)
    const peers = c.nodes.map((n) => `${n.id}@${n.clusterIp}:${PEER_PORT}`).join(",")
    for (const node of c.nodes) {
      node.process = spawn(
        "ip",
        [
          ...["netns", "exec", node.ns, process.execPath, "--import", "tsx", mainScript, "node"],
          ...["--id", node.id, "--host", "0.0.0.0", "--advertise", node.clusterIp],
          ...["--client-port", String(CLIENT_PORT), "--peer-port", String(PEER_PORT)],
          ...["--peers", peers, "--store", "memory", "--cluster", `e2e${c.tag}`],
          ...args,
        ],
        { cwd: repoRoot, stdio: ["ignore", "pipe", "pipe"] },
      )
      const append = (chunk: Buffer) => {
        node.log = (node.log + chunk.toString("utf8")).slice(-20_000)
      }
      node.process.stdout?.on("data", append)
      node.process.stderr?.on("data", append)
    }
    await Promise.all(
      c.nodes.map((node) =>
        pollUntil(`${node.id} to answer PING`, () => ping(node.clientPort, node.clientIp), {
          timeoutMs: 60_000,
        }).catch((e: Error) => {
          throw new Error(`${e.message}\n--- ${node.id} log ---\n${node.log}`)
        }),
      ),
    )
    return c
  }

  private network(k: number): void {
    for (const bridge of [this.bridgeA, this.bridgeB, this.bridgeK]) {
      ip("link", "add", bridge, "type", "bridge")
      ip("link", "set", bridge, "up")
    }
    ip("addr", "add", `10.202.${this.subnet}.254/24`, "dev", this.bridgeK)
    for (let i = 0; i < k; i++) {
      const ns = `d${this.tag}n${i}`
      const clusterLink = `dc${this.tag}n${i}`
      const clientLink = `dk${this.tag}n${i}`
      ip("netns", "add", ns)
      ip("netns", "exec", ns, "ip", "link", "set", "lo", "up")
      for (const [link, inside, bridge, net] of [
        [clusterLink, "c0", this.bridgeA, 201],
        [clientLink, "k0", this.bridgeK, 202],
      ] as const) {
        ip("link", "add", link, "type", "veth", "peer", "name", inside, "netns", ns)
        ip("link", "set", link, "master", bridge)
        ip("link", "set", link, "up")
        ip(
          "netns",
          "exec",
          ns,
          "ip",
          "addr",
          "add",
          `10.${net}.${this.subnet}.${i + 1}/24`,
          "dev",
          inside,
        )
        ip("netns", "exec", ns, "ip", "link", "set", inside, "up")
      }
      this.nodes.push({
        id: `n${i}`,
        ns,
        clusterLink,
        clusterIp: `10.201.${this.subnet}.${i + 1}`,
        clientIp: `10.202.${this.subnet}.${i + 1}`,
        clientPort: CLIENT_PORT,
        process: undefined as unknown as ChildProcess,
        log: "",
      })
    }
  }

  /** Cut the cluster network in two: `island` on one side, every other node on the other. */
  partition(island: ReadonlyArray<number>): void {
    for (const i of island) ip("link", "set", this.nodes[i]!.clusterLink, "master", this.bridgeB)
  }

  heal(): void {
    for (const node of this.nodes) ip("link", "set", node.clusterLink, "master", this.bridgeA)
  }

  async destroy(): Promise<void> {
    await Promise.all(
      this.nodes.map(async (node) => {
        const child = node.process
        if (child === undefined || child.exitCode !== null || child.signalCode !== null) return
        const exited = new Promise((resolve) => child.once("exit", resolve))
        child.kill("SIGTERM")
        const timer = setTimeout(() => child.kill("SIGKILL"), 3000)
        await exited
        clearTimeout(timer)
      }),
    )
    this.destroySync()
  }

  /** Kill what is left and remove the namespaces and bridges (idempotent). */
  destroySync(): void {
    for (const node of this.nodes) {
      if (node.process !== undefined && node.process.exitCode === null) node.process.kill("SIGKILL")
    }
    // `ip netns exec` runs the node as a child: kill whatever still runs in each namespace.
    for (const node of this.nodes) {
      try {
        const pids = execFileSync("ip", ["netns", "pids", node.ns], { encoding: "utf8" })
        for (const pid of pids.split(/\s+/).filter(Boolean)) process.kill(Number(pid), "SIGKILL")
      } catch {}
    }
    for (const node of this.nodes) {
      try {
        ip("netns", "del", node.ns)
      } catch {}
    }
    for (const bridge of [this.bridgeA, this.bridgeB, this.bridgeK]) {
      try {
        ip("link", "del", bridge)
      } catch {}
    }
    live.delete(this)
  }
}
