/**
 * `runNode(config)`: one real storage node. Composes the live layers of the runtime's services
 * (impl/node/runtime.ts: the system clock, TCP to the peers, the configured store, the parsed
 * configuration), then acquires, in a scope, the driver (the storage machine), the peer
 * transport and the RESP server, logs one start-up line, and runs until SIGINT/SIGTERM or a
 * fatal store error. On the way out everything is released in reverse order: clients first,
 * then the peer sockets, the machine's timers, and last the store, which is flushed and closed.
 */
import { Deferred, Effect } from "effect"
import type { NodeId } from "../core/ids.ts"
import * as Config from "./config.ts"
import type { Driver } from "./driver.ts"
import * as Log from "./log.ts"
import * as RespServer from "./resp-server.ts"
import * as Runtime from "./runtime.ts"
import * as Store from "./store.ts"
import type * as Transport from "./transport.ts"
import * as Status from "../wire/status.ts"

export type StopReason = "SIGINT" | "SIGTERM" | "fatal" | "removed"

/** Completes with the first of SIGINT or SIGTERM; the handlers are removed afterwards. */
export const awaitSignal: Effect.Effect<"SIGINT" | "SIGTERM"> = Effect.async((resume) => {
  const onInt = () => resume(Effect.succeed("SIGINT" as const))
  const onTerm = () => resume(Effect.succeed("SIGTERM" as const))
  process.once("SIGINT", onInt)
  process.once("SIGTERM", onTerm)
  return Effect.sync(() => {
    process.off("SIGINT", onInt)
    process.off("SIGTERM", onTerm)
  })
})

/**
 * While the node runs and shuts down, a repeated SIGINT/SIGTERM (a terminal's Ctrl-C reaches
 * every process of the group, and `dht cluster` then sends SIGTERM as well) must not kill it
 * half-way through closing the store: keep a listener installed until the scope is closed.
 */
export const holdSignals = Effect.acquireRelease(
  Effect.sync(() => {
    const ignore = () => {}
    process.on("SIGINT", ignore)
    process.on("SIGTERM", ignore)
    return ignore
  }),
  (ignore) =>
    Effect.sync(() => {
      process.off("SIGINT", ignore)
      process.off("SIGTERM", ignore)
    }),
)

/** The node's services, running until `stop` completes. */
const serve = <E>(stop: Effect.Effect<StopReason, E>) =>
  Effect.gen(function* () {
    const config = yield* Config.NodeConfig
    const log = yield* Log.make
    const ended = yield* Deferred.make<"fatal" | "removed">()
    // Test-only negative control (dht verify --unsafe-failover): the old failover, which can run
    // a forwarded write twice and lose acknowledged writes (spec KV-9). Never in production.
    const unsafeFailover = process.env.DHT_UNSAFE_FAILOVER === "1"
    if (unsafeFailover) {
      log.error("DHT_UNSAFE_FAILOVER=1: forwarded writes may run twice (negative control only)")
    }
    let forget: ((id: NodeId) => void) | undefined
    const {
      driver,
      transport: peers,
      generation,
    } = yield* Runtime.startNode({
      log,
      machine: { unsafeFailover },
      onFatal: (reason) => {
        log.error(`stopping: ${reason}`)
        Deferred.unsafeDone(ended, Effect.succeed("fatal" as const))
      },
      onRemoved: () => Deferred.unsafeDone(ended, Effect.succeed("removed" as const)),
      onMembership: (members, previous) => {
        const before = new Map(previous.map((m) => [m.id, m]))
        const changes: Array<string> = []
        for (const m of members) {
          const was = before.get(m.id)
          if (was === undefined) changes.push(`${m.id} ${m.status} at ${m.peerAddress}`)
          else if (was.status !== m.status) changes.push(`${m.id} ${was.status} -> ${m.status}`)
          else if (was.peerAddress !== m.peerAddress)
            changes.push(`${m.id} moved to ${m.peerAddress}`)
          if (m.status === "removed" && m.id !== config.id) forget?.(m.id)
        }
        // The first view is the boot configuration, already in the start-up line.
        if (previous.length > 0 && changes.length > 0) log.info(`membership: ${changes.join("; ")}`)
      },
    })
    forget = (id) => peers.forget(id)
    const store = yield* Store.Store
    const resp = yield* RespServer.make({
      config,
      log,
      clock: yield* Runtime.NodeClock,
      submit: (op, onResult) => driver.submit(op, onResult),
      operator: (op, onResult) => driver.operator(op, onResult),
      starting: () => !driver.serving(),
      info: () => infoSections(config, driver, peers, store),
      status: () => driver.status(),
    })
    const members = config.members
      .map(
        (m) =>
          `${m.id}@${Config.showAddress(m.peerAddress)}${m.weight === 1 ? "" : `/${m.weight}`}`,
      )
      .join(",")
    yield* Effect.logInfo(
      `node ${config.id} up: clients ${Config.showAddress(resp.listening)}, ` +
        `peers ${Config.showAddress(peers.listening)} (advertised ${Config.showAddress(config.advertise)}), ` +
        `cluster "${config.cluster}" ${config.routing === "chord" ? "chord routing, seeds" : config.joining ? "joining via" : "members"} ${members}, ` +
        `n=${config.n} r=${config.r} w=${config.w}, generation ${generation}, ` +
        `store ${store.kind}${store.kind === "lmdb" ? ` in ${config.dataDir}` : ""}`,
    )
    const reason = yield* Effect.raceFirst(stop, Deferred.await(ended))
    yield* Effect.logInfo(`node ${config.id} stopping (${reason})`)
    return reason
  })

const infoSections = (
  config: Config.Config,
  driver: Driver,
  transport: Transport.Transport,
  store: Store.StoreShape,
): ReadonlyArray<readonly [string, ReadonlyArray<readonly [string, string | number]>]> => {
  const d = driver.stats()
  const t = transport.stats()
  const keys = store.size()
  // Dead objects (tombstones, expired values), estimated from the reaper's last complete pass.
  const reclaim = driver.reclaim()
  const tombstones = Status.tombstoneEstimate(keys, reclaim.lastPass) ?? 0
  const live = keys - tombstones
  return [
    [
      "Stats",
      [
        ["gets", d.machine.gets],
        ["puts", d.machine.puts],
        ["forwarded", d.machine.forwarded],
        ["read_repairs", d.machine.readRepairs],
        ["purges", d.machine.purges],
        ["hints_stored", d.machine.hintsStored],
        ["hints_delivered", d.machine.hintsDelivered],
        ["hints_held", store.hintCount()],
        ["streamed", d.machine.streamed],
        ["dropped_after_handover", d.machine.dropped],
        ["failures", d.machine.failures],
        ["requests_in_flight", d.inFlight],
        ["persists_in_flight", d.persistsInFlight],
        ["peer_messages_sent", t.sent],
        ["peer_messages_received", t.received],
        ["peer_messages_dropped", t.dropped],
        ["peer_connections_rejected", t.rejectedConnections],
        ["reaped", d.machine.reaped],
        ["stale_messages_dropped", d.machine.stale],
      ],
    ],
    [
      "Keyspace",
      [["db0", `keys=${keys},live=${live},tombstones=${tombstones},expires=0,avg_ttl=0`]],
    ],
    [
      "Cluster",
      [
        ["cluster_enabled", 0],
        ["node_id", config.id],
        ["cluster_name", config.cluster],
        // Membership as this node sees it: id:status@peer address.
        [
          "members",
          driver
            .members()
            .map((m) => `${m.id}:${m.status}@${m.peerAddress}`)
            .join(","),
        ],
        [
          "peers",
          transport
            .peers()
            .map(
              (p) =>
                `${p.id}@${p.address}:${p.connected ? "connected" : "disconnected"}` +
                `:${driver.believedUp(p.id) ? "up" : "down"}`,
            )
            .join(","),
        ],
        ["n", config.n],
        ["r", config.r],
        ["w", config.w],
        ["store", store.kind],
        ["local_keys", keys],
      ],
    ],
  ]
}

/**
 * Run one node until SIGINT/SIGTERM (or until `stop` completes, for tests that run a node in
 * process). Fails with an Error if a listener or the store cannot be opened.
 */
export const runNode = (
  config: Config.Config,
  stop: Effect.Effect<StopReason> = awaitSignal,
): Effect.Effect<StopReason, Error> =>
  Effect.scoped(
    Effect.zipRight(
      holdSignals,
      // The layers (the store last) are released after the services of `serve`, and before
      // holdSignals.
      Effect.scoped(serve(stop)).pipe(Effect.provide(Runtime.layerLive(config))),
    ),
  ).pipe(Effect.provide(Log.layer))
