/**
 * Membership operations: `dht join`, `dht leave`, `dht remove NODE`.
 *
 * - `join` runs a new node in this process exactly as `dht node --join …` does (same flags,
 *   same code), and follows its own DHT.STATUS with a progress bar until it is up.
 * - `leave` sends DHT.LEAVE to the node at --port (a decommission: it streams its data to the
 *   new owners, then removes itself and exits), and follows the streaming until another member
 *   sees it removed, or a timeout.
 * - `remove` sends DHT.REMOVE NODE (for a node that is dead for good: its ranges are
 *   re-replicated from the surviving replicas) and reports; --wait follows the streaming.
 *
 * A request the node refuses (`cannot leave: 2 members would remain, fewer than N=3`,
 * `cannot remove the last member`, `no member n9`) is printed as the node worded it and the
 * command exits with 1; flag errors exit with 2, as for every dht command.
 */
import { Either } from "effect"
import { NodeId } from "../core/ids.ts"
import * as Ring from "../core/ring.ts"
import * as Args from "./args.ts"
import * as Node from "./node.ts"
import * as Progress from "./progress.ts"
import * as Status from "./status.ts"

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

const say = (line: string): void => {
  process.stdout.write(`${line}\n`)
}

const seconds = (ms: number): string => `${(ms / 1000).toFixed(1)} s`

const targetFlags = [
  Args.flag("host", "string", "HOST", "the node's client address", "127.0.0.1"),
  Args.flag("port", "int", "PORT", "the node's client (RESP) port", "7001"),
]

/** Send one operator intent; its `+message`, or a NodeError with the node's text. */
const operator = (target: Status.Target, ...args: ReadonlyArray<string>): Promise<string> =>
  Status.withNode(target, async (client) => {
    const reply = await client.call(args[0]!, ...args.slice(1))
    return Buffer.isBuffer(reply) ? reply.toString("utf8") : String(reply)
  })

/** Exit code and message for a failure talking to a node. */
const failed = (name: string, e: unknown): number => {
  process.stderr.write(`dht ${name}: ${Status.nodeMessage(e)}\n`)
  return 1
}

/** The report of the first of `members` (other than `except`) that answers. */
const firstAnswer = async (
  members: ReadonlyArray<Status.MemberStatus>,
  except: string,
): Promise<Status.StatusReport | undefined> => {
  for (const m of members) {
    if (m.id === except || m.status === "removed") continue
    const report = await Status.fetchMember(m)
    if (report !== undefined) return report
  }
  return undefined
}

// ---------------------------------------------------------------------------------------------
// dht leave

const leaveSpec: Args.CommandSpec = {
  name: "leave",
  summary: "decommission a node: stream its data to the new owners, then remove it",
  usage: "dht leave [--host 127.0.0.1] [--port 7001] [--timeout-ms 600000] [--no-wait]",
  flags: [
    ...targetFlags,
    Args.flag(
      "timeout-ms",
      "int",
      "MS",
      "stop following (the node keeps leaving) if it is not removed by then",
      "600000",
    ),
    Args.flag("no-wait", "bool", "", "send DHT.LEAVE and return at once"),
  ],
  notes: [
    "The node at --port leaves: it streams every key it holds to the nodes that own it without",
    "it (within the node's streaming budget), then marks itself removed and exits. The progress",
    "bar counts keys streamed against the keys it held. The cluster must keep at least N",
    "members. Ctrl-C stops following; the node keeps leaving.",
  ],
  examples: ["dht leave --port 7003", "dht leave --host 10.0.0.7 --port 7001 --timeout-ms 3600000"],
}

const leave = async (parsed: Args.Parsed): Promise<number> => {
  if (parsed.positional.length > 0) {
    return Args.usageError(
      leaveSpec,
      `unexpected argument "${parsed.positional[0]}": dht leave makes the node at --port leave; ` +
        "to take out another node that is dead for good, use dht remove NODE",
    )
  }
  const target = Status.targetFromFlags(parsed.values)
  const timeoutMs = Args.num(parsed.values, "timeout-ms") ?? 600_000
  let before: Status.StatusReport
  try {
    before = await Status.fetchStatus(target)
  } catch (e) {
    return failed("leave", e)
  }
  const id = before.self
  let message: string
  try {
    message = await operator(target, "DHT.LEAVE")
  } catch (e) {
    return failed("leave", e)
  }
  say(`${id}: ${message}`)
  if (Args.bool(parsed.values, "no-wait")) {
    say(`follow it with: dht status --port ${target.port} --watch`)
    return 0
  }
  if (before.routing === "chord") return followChordLeave(target, id, timeoutMs)
  const others = before.members.filter((m) => m.id !== id && m.status !== "removed")
  const total = Math.max(1, before.keys)
  const baseline = before.streaming.streamed
  const bar = Progress.start(`${id} leaving (${Status.count(before.keys)} keys)`, total)
  const started = Date.now()
  let interrupted = false
  const onSignal = () => {
    interrupted = true
  }
  process.once("SIGINT", onSignal)
  try {
    let streamed = 0
    while (Date.now() - started < timeoutMs && !interrupted) {
      const own = await Status.fetchStatus(target, 1500).catch(() => undefined)
      if (own !== undefined && own.self === id) {
        streamed = own.streaming.streamed - baseline
        // Never 100 % before the removal is seen: the last acks and the removal are still due.
        bar.update(Math.min(streamed, total * 0.99))
      }
      const observer = await firstAnswer(others, id)
      const seen = observer?.members.find((m) => m.id === id)
      if (seen?.status === "removed") {
        bar.finish()
        say(
          `${id} left: removed from membership (as seen by ${observer!.self}) after ` +
            `${seconds(Date.now() - started)}; ${Status.count(streamed)} keys streamed to the new owners`,
        )
        return 0
      }
      await sleep(250)
    }
    bar.finish()
    if (interrupted) {
      say(`stopped following; ${id} keeps leaving (dht status --watch shows it)`)
      return 130
    }
    process.stderr.write(
      `dht leave: ${id} is not removed after ${seconds(timeoutMs)} (${Status.count(streamed)} of ` +
        `${Status.count(before.keys)} keys streamed); it keeps leaving: dht status --watch\n`,
    )
    return 1
  } finally {
    process.off("SIGINT", onSignal)
  }
}

/** Chord routing: the node hands its arc to its successor and stops; wait until it is gone. */
const followChordLeave = async (
  target: Status.Target,
  id: string,
  timeoutMs: number,
): Promise<number> => {
  const started = Date.now()
  while (Date.now() - started < timeoutMs) {
    const own = await Status.fetchStatus(target, 1500).catch(() => undefined)
    if (own === undefined || own.self !== id) {
      say(`${id} left the Chord ring and stopped after ${seconds(Date.now() - started)}`)
      return 0
    }
    await sleep(250)
  }
  process.stderr.write(`dht leave: ${id} still answers after ${seconds(timeoutMs)}\n`)
  return 1
}

// ---------------------------------------------------------------------------------------------
// dht remove

const removeSpec: Args.CommandSpec = {
  name: "remove",
  summary: "remove a dead node for good; its ranges are re-replicated",
  usage: "dht remove NODE [--host 127.0.0.1] [--port 7001] [--wait]",
  flags: [
    ...targetFlags,
    Args.flag("wait", "bool", "", "follow the re-replication until every member has settled"),
    Args.flag("timeout-ms", "int", "MS", "with --wait: stop following after this long", "600000"),
  ],
  notes: [
    "NODE is a member id (as dht status shows it). The request goes to the node at --port,",
    "which marks NODE removed (final: the id can never rejoin) and gossips it. Prefer",
    "dht leave for a node that still runs: it hands its data over first. The cluster must",
    "keep at least N members.",
  ],
  examples: ["dht remove n2", "dht remove n2 --port 7002 --wait"],
}

const remove = async (parsed: Args.Parsed): Promise<number> => {
  if (parsed.positional.length !== 1) {
    return Args.usageError(
      removeSpec,
      parsed.positional.length === 0
        ? "which node? usage: dht remove NODE (a member id, see dht status)"
        : `one node at a time, got ${parsed.positional.join(" ")}`,
    )
  }
  const node = parsed.positional[0]!
  const target = Status.targetFromFlags(parsed.values)
  let message: string
  try {
    message = await operator(target, "DHT.REMOVE", node)
  } catch (e) {
    return failed("remove", e)
  }
  say(message)
  if (!Args.bool(parsed.values, "wait")) {
    say(`follow the re-replication with: dht status --port ${target.port} --watch`)
    return 0
  }
  const timeoutMs = Args.num(parsed.values, "timeout-ms") ?? 600_000
  const started = Date.now()
  // Let the removal spread by gossip before asking whether streaming has settled.
  await sleep(1500)
  while (Date.now() - started < timeoutMs) {
    const s = await Status.gather(target, 1500).catch(() => undefined)
    if (s !== undefined) {
      const busy = [...s.own.values()].filter(
        (o) => o !== undefined && Status.streamingText(o.streaming) !== "settled",
      )
      const agreed = [...s.own.values()].every(
        (o) => o === undefined || o.members.find((m) => m.id === node)?.status === "removed",
      )
      if (busy.length === 0 && agreed) {
        say(`re-replication settled after ${seconds(Date.now() - started)}`)
        say(Status.streamingSummary(s))
        return 0
      }
    }
    await sleep(500)
  }
  process.stderr.write(`dht remove: streaming has not settled after ${seconds(timeoutMs)}\n`)
  return 1
}

// ---------------------------------------------------------------------------------------------
// dht join

const nodeSpec = Node.command.spec

const joinSpec: Args.CommandSpec = {
  name: "join",
  summary: "start a new node that joins a running cluster (dht node --join), with progress",
  usage: "dht join --id ID --peers n0@HOST:PORT,... [node options]",
  flags: nodeSpec.flags
    .filter((f) => f.name !== "join")
    .map((f) =>
      f.name === "id"
        ? { ...f, help: "the new node's id (not used before in this cluster)", default: undefined }
        : f.name === "peers"
          ? {
              ...f,
              help: "members of the running cluster to contact (seeds), id@host:port,...; not this node",
              default: undefined,
            }
          : f,
    ),
  notes: [
    "The same as dht node --join with the same options: --peers lists members of the running",
    "cluster (seeds), not this node. The node announces itself as joining, the current owners",
    "stream it its share of the data (it also receives new writes meanwhile), then it is up and",
    "serves reads. Progress: keys received against an estimate of its share. The node keeps",
    "running until Ctrl-C (it stays a member; use dht leave to decommission it).",
  ],
  examples: [
    "dht join --id n3 --peers n0@127.0.0.1:8001,n1@127.0.0.1:8002,n2@127.0.0.1:8003",
    "dht join --id n3 --host 0.0.0.0 --advertise 10.0.0.4 --client-port 7001 --peer-port 8001 \\",
    "    --peers n0@10.0.0.1:8001,n1@10.0.0.2:8001,n2@10.0.0.3:8001 --data-dir /var/lib/dht",
  ],
}

/** Where a client on this machine reaches a node listening on `host`. */
const localTarget = (host: string, port: number): Status.Target => ({
  host: host === "0.0.0.0" ? "127.0.0.1" : host === "::" ? "::1" : host,
  port,
})

/**
 * The number of keys the joining node should end up with: the distinct keys of the cluster
 * (estimated as the keys the answering ring members hold over the fraction of the keyspace
 * they replicate) times the fraction it will replicate once up. An estimate: members also keep
 * the keys they coordinated, so it errs high.
 */
const expectedKeys = async (report: Status.StatusReport): Promise<number | undefined> => {
  const live = report.members.filter((m) => m.status === "up" || m.status === "joining")
  const onRing = report.members.find((m) => m.tokens > 0)
  const tpn =
    onRing === undefined ? Ring.DEFAULT_TOKENS_PER_NODE : Math.round(onRing.tokens / onRing.weight)
  const future = Ring.make(
    live.map((m) => ({ id: NodeId(m.id), weight: m.weight })),
    tpn,
  )
  const share = Ring.replicaOwnership(future, report.n).get(NodeId(report.self)) ?? 0
  const holders = report.members.filter(
    (m) => (m.status === "up" || m.status === "leaving") && m.replicated > 0,
  )
  const answers = await Promise.all(
    holders.map(async (m) => ({ m, own: await Status.fetchMember(m) })),
  )
  let keys = 0
  let fraction = 0
  for (const { m, own } of answers) {
    if (own === undefined) continue
    keys += own.keys
    fraction += m.replicated
  }
  return fraction === 0 ? undefined : Math.round((keys / fraction) * share)
}

/** Follow the joining node's own DHT.STATUS until it is up or `done.value`. */
const followJoin = async (
  id: string,
  target: Status.Target,
  done: { value: boolean },
): Promise<void> => {
  const started = Date.now()
  let bar: Progress.Progress | undefined
  let expected: number | undefined
  let estimatedAt = 0
  let warnedAt = started
  let announced = false
  while (!done.value) {
    const report = await Status.fetchStatus(target, 1500).catch(() => undefined)
    const self = report?.members.find((m) => m.id === id)
    if (report !== undefined && self !== undefined) {
      if (self.status === "up") {
        if (bar !== undefined) {
          bar.update(expected ?? report.keys)
          bar.finish()
        }
        say(
          `${id} is up after ${seconds(Date.now() - started)}: owns ${Status.percent(self.owned)} ` +
            `of the ring, replicates ${Status.percent(self.replicated)}, holds ` +
            `${Status.count(report.keys)} keys. Clients: ${self.clientAddress}. Ctrl-C stops the ` +
            "node (it stays a member; dht leave decommissions it).",
        )
        return
      }
      if (self.status === "removed") return
      // Re-estimate every 5 s (every second until a first estimate: right after start the
      // node may not know the members' client addresses yet).
      if (Date.now() - estimatedAt > (expected === undefined ? 1000 : 5000)) {
        estimatedAt = Date.now()
        expected = (await expectedKeys(report)) ?? expected
      }
      if (!announced) {
        announced = true
        say(`${id}: joining; the current owners stream it its share of the data`)
      }
      if (bar === undefined && expected !== undefined) {
        say(`${id}: expecting about ${Status.count(expected)} keys`)
        bar = Progress.start(`${id} joining`, Math.max(1, expected))
      }
      if (bar !== undefined && expected !== undefined) {
        bar.update(Math.min(report.keys, expected * 0.99))
      }
      if (Date.now() - warnedAt > 30_000) {
        warnedAt = Date.now()
        say(
          `${id}: still joining after ${seconds(Date.now() - started)}: ` +
            `${Status.count(report.keys)} keys so far, ${Status.streamingText(report.streaming)}. ` +
            "It becomes up once every owner has streamed to it (pushes to a member that is " +
            "down are given up after about 20 s); a member dead for good should be removed: " +
            "dht remove it (dht status shows who is down).",
        )
      }
    }
    await sleep(250)
  }
}

const join = async (parsed: Args.Parsed, argv: ReadonlyArray<string>): Promise<number> => {
  if (Args.str(parsed.values, "peers") === undefined) {
    return Args.usageError(
      joinSpec,
      "--peers is required: the members (seeds) of the running cluster, id@host:port,...",
    )
  }
  if (Args.str(parsed.values, "id") === undefined) {
    return Args.usageError(joinSpec, "--id is required: the new node's id, unused in the cluster")
  }
  const config = Node.configFromFlags({ ...parsed.values, join: true })
  if (Either.isLeft(config)) return Args.usageError(joinSpec, config.left)
  const c = config.right
  const done = { value: false }
  const following = followJoin(c.id, localTarget(c.client.host, c.client.port), done)
  try {
    return await Node.command.run([...argv, "--join"])
  } finally {
    done.value = true
    await following
  }
}

// ---------------------------------------------------------------------------------------------

export const leaveCommand: Args.Subcommand = {
  spec: leaveSpec,
  run: (argv) => Args.withParsed(leaveSpec, argv, leave),
}

export const removeCommand: Args.Subcommand = {
  spec: removeSpec,
  run: (argv) => Args.withParsed(removeSpec, argv, remove),
}

export const joinCommand: Args.Subcommand = {
  spec: joinSpec,
  run: (argv) => Args.withParsed(joinSpec, argv, (parsed) => join(parsed, argv)),
}
