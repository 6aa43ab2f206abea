/**
 * The runtime of one real node as Effect services, each with a live layer and a memory layer:
 *
 *  - `NodeClock`: the time and the timers of the node: the driver steps the machine with them,
 *    the TCP transport times its reconnects and handshakes by them, and the RESP server its
 *    expiries, TTLs and uptime (main.ts hands it the same clock). Live:
 *    `Date.now` and `setTimeout` (`layerSystemClock`). Memory: Effect's own `Clock` service
 *    (`layerEffectClock`), which under `TestContext` is `TestClock`, so that a test moves time
 *    with `TestClock.adjust` and a timer fires exactly when the adjusted time passes its
 *    deadline.
 *  - `PeerTransport`: opens the link to the peers with a receiver for their messages. Live: TCP
 *    (impl/node/transport.ts, `layerTcpTransport`). Memory: a `MemoryNetwork` connecting
 *    several drivers in one process, whose messages stay in flight until the test delivers or
 *    drops them.
 *  - `Store` (impl/node/store.ts): LMDB (`Store.layerLmdb`) or memory (`Store.layerMemory`).
 *  - `NodeConfig` (impl/node/config.ts): the parsed configuration (`Config.layer`).
 *
 * `startNode` reads the services once, builds the driver and opens the transport; from then on
 * everything is plain synchronous code (the driver, the machine, the store's reads, the
 * transport's send): no Effect runs per message, per request or per timer on the live layers.
 */
import { Context, Duration, Effect, Fiber, Layer, Runtime, type Scope } from "effect"
import type { NodeId } from "../core/ids.ts"
import type { PeerMessage } from "../core/messages.ts"
import type * as Node from "../core/node.ts"
import * as Config from "./config.ts"
import { Driver, type DriverOptions } from "./driver.ts"
import * as Log from "./log.ts"
import * as Store from "./store.ts"
import * as Transport from "./transport.ts"

// ---------------------------------------------------------------------------------------------
// Clock and timers

/** Cancels a scheduled call (nothing if it ran already). */
export type Cancel = () => void

export interface ClockShape {
  /** Wall-clock milliseconds since the epoch. */
  readonly now: () => number
  /**
   * Call `fn` once the clock has reached `at` (ms since the epoch; soon if it has already).
   * Never calls `fn` before returning.
   */
  readonly schedule: (at: number, fn: () => void) => Cancel
}

export class NodeClock extends Context.Tag("dht/NodeClock")<NodeClock, ClockShape>() {}

/** The process's clock: `Date.now` and `setTimeout`, which never keeps the process alive. */
export const systemClock: ClockShape = {
  now: () => Date.now(),
  schedule: (at, fn) => {
    const timer = setTimeout(fn, Math.max(0, at - Date.now()))
    timer.unref()
    return () => clearTimeout(timer)
  },
}

export const layerSystemClock: Layer.Layer<NodeClock> = Layer.succeed(NodeClock, systemClock)

/**
 * The node clock on Effect's `Clock` service: `TestClock` under `TestContext` (tests move time
 * with `TestClock.adjust`, and a timer fires when the adjusted time passes its deadline, with
 * `now()` at that deadline). Each timer is a fiber sleeping on that clock; fine for tests, too
 * slow for the live path.
 */
export const layerEffectClock: Layer.Layer<NodeClock> = Layer.effect(
  NodeClock,
  Effect.gen(function* () {
    const clock = yield* Effect.clock
    const fork = Runtime.runFork(yield* Effect.runtime<never>())
    return {
      now: () => clock.unsafeCurrentTimeMillis(),
      schedule: (at, fn) => {
        const delay = Math.max(0, at - clock.unsafeCurrentTimeMillis())
        // A forked fiber starts on Effect's scheduler, never inside this call.
        const fiber = fork(Effect.zipRight(clock.sleep(Duration.millis(delay)), Effect.sync(fn)))
        return () => {
          fork(Fiber.interrupt(fiber))
        }
      },
    }
  }),
)

// ---------------------------------------------------------------------------------------------
// Peer transport

export type Receiver = (from: NodeId, message: PeerMessage) => void

export interface PeerTransportShape {
  /** Open the link to the peers; decoded messages go to `onMessage`. Closed with the scope. */
  readonly open: (onMessage: Receiver) => Effect.Effect<Transport.Transport, Error, Scope.Scope>
}

export class PeerTransport extends Context.Tag("dht/PeerTransport")<
  PeerTransport,
  PeerTransportShape
>() {}

/** TCP to the peers the configuration names (impl/node/transport.ts), timed by the node clock. */
export const layerTcpTransport: Layer.Layer<PeerTransport, never, Config.NodeConfig | NodeClock> =
  Layer.effect(
    PeerTransport,
    Effect.map(Effect.all([Config.NodeConfig, NodeClock]), ([config, clock]) => ({
      open: (onMessage: Receiver) =>
        Effect.flatMap(Log.make, (log) => Transport.make({ config, log, clock, onMessage })),
    })),
  )

/** A peer message on its way through a `MemoryNetwork`. */
export interface InFlight {
  /** Order of sending, over the whole network. */
  readonly seq: number
  readonly from: NodeId
  readonly to: NodeId
  readonly message: PeerMessage
}

/**
 * Peers in one process: a message sent is kept in flight until `deliver` hands it to its
 * receiver (synchronously) or `drop` loses it, in whatever order the caller picks. `onSend` sees
 * every message the moment a driver hands it to its transport.
 */
export class MemoryNetwork {
  readonly inFlight: Array<InFlight> = []
  private readonly receivers = new Map<NodeId, Receiver>()
  private seq = 0

  constructor(private readonly onSend: (sent: InFlight) => void = () => {}) {}

  /** The transport of node `self`. */
  layer(self: NodeId): Layer.Layer<PeerTransport> {
    return Layer.succeed(PeerTransport, {
      open: (onMessage) =>
        Effect.acquireRelease(
          Effect.sync(() => {
            this.receivers.set(self, onMessage)
            return this.transport(self)
          }),
          () => Effect.sync(() => this.receivers.delete(self)),
        ),
    })
  }

  /** Hand the `index`-th message in flight to its receiver (lost if it has none). */
  deliver(index: number): InFlight | undefined {
    const [m] = this.inFlight.splice(index, 1)
    if (m !== undefined) this.receivers.get(m.to)?.(m.from, m.message)
    return m
  }

  drop(index: number): InFlight | undefined {
    return this.inFlight.splice(index, 1)[0]
  }

  private transport(self: NodeId): Transport.Transport {
    const counters: Transport.TransportStats = {
      sent: 0,
      received: 0,
      dropped: 0,
      rejectedConnections: 0,
      inboundConnections: 0,
    }
    const known = new Set<NodeId>()
    return {
      send: (to, message) => {
        known.add(to)
        counters.sent++
        const sent: InFlight = { seq: this.seq++, from: self, to, message }
        this.onSend(sent)
        this.inFlight.push(sent)
      },
      stats: () => counters,
      peers: () =>
        [...known].map((id) => ({
          id,
          address: `memory:${id}`,
          connected: this.receivers.has(id),
          queued: this.inFlight.filter((m) => m.to === id).length,
        })),
      forget: (id) => {
        known.delete(id)
        for (let i = this.inFlight.length - 1; i >= 0; i--) {
          const m = this.inFlight[i]!
          if (m.from === self && m.to === id) this.inFlight.splice(i, 1)
        }
      },
      listening: { host: "memory", port: 0 },
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Layers

/** The store a configuration asks for: LMDB in its data directory, or memory. */
export const layerStore = (config: Config.Config): Layer.Layer<Store.Store, Error> =>
  config.store === "memory" ? Store.layerMemory : Store.layerLmdb(config.dataDir)

export type Services = NodeClock | PeerTransport | Store.Store | Config.NodeConfig

/** A real node: the system clock, TCP, the configured store, the parsed configuration. */
export const layerLive = (config: Config.Config): Layer.Layer<Services, Error> =>
  Layer.mergeAll(layerTcpTransport, layerStore(config)).pipe(
    Layer.provideMerge(Layer.merge(layerSystemClock, Config.layer(config))),
  )

/**
 * A node in one process: Effect's clock (TestClock under TestContext), `network`, the memory
 * store; a test may put its own store layer (a real LMDB store it controls) or clock layer
 * (one that observes the timers) in their place.
 */
export const layerMemory = (
  config: Config.Config,
  network: MemoryNetwork,
  replace: {
    readonly store?: Layer.Layer<Store.Store, Error>
    readonly clock?: Layer.Layer<NodeClock>
  } = {},
): Layer.Layer<Services, Error> =>
  Layer.mergeAll(
    replace.clock ?? layerEffectClock,
    network.layer(config.id),
    replace.store ?? Store.layerMemory,
    Config.layer(config),
  )

// ---------------------------------------------------------------------------------------------
// The node

/** What the node around the driver decides: its log, its exits, and the machine's overrides. */
export type NodeHooks = Pick<DriverOptions, "log" | "onFatal" | "onRemoved" | "onMembership"> & {
  /** Overrides of the machine's configuration (negative controls such as unsafeFailover). */
  readonly machine?: Partial<Node.Config>
}

export interface RunningNode {
  readonly driver: Driver
  readonly transport: Transport.Transport
  readonly generation: number
}

/**
 * Read the services once, start the driver (stopped with the scope) and open the transport to
 * the peers (closed with the scope, before the driver stops).
 */
export const startNode = (
  hooks: NodeHooks,
): Effect.Effect<RunningNode, Error, Services | Scope.Scope> =>
  Effect.gen(function* () {
    const config = yield* Config.NodeConfig
    const store = yield* Store.Store
    const clock = yield* NodeClock
    const peers = yield* PeerTransport
    const generation = store.nextGeneration()
    let transport: Transport.Transport | undefined
    const driver = new Driver({
      machine: {
        ...Config.machineConfig(config, generation),
        savedMembers: store.loadMembership()?.members,
        ...hooks.machine,
      },
      store,
      clock,
      tickMs: config.tickMs,
      log: hooks.log,
      send: (to, message, address) => transport?.send(to, message, address),
      onFatal: hooks.onFatal,
      onRemoved: hooks.onRemoved,
      onMembership: hooks.onMembership,
    })
    yield* Effect.addFinalizer(() => Effect.sync(() => driver.stop()))
    transport = yield* peers.open((from, message) => driver.receive(from, message))
    return { driver, transport, generation }
  })
