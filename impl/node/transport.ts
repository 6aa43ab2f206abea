/**
 * Peer transport over TCP: length-prefixed frames (impl/wire/frame.ts) of JSON peer messages
 * (impl/wire/schema.ts).
 *
 * Connections are one-way. Each node keeps one outbound connection to every peer and sends only
 * on it; it receives only on the connections peers opened to it. The first frame of a
 * connection is `Hello { from, cluster, address }`; a connection naming another cluster (or this node's
 * own id) is closed. Peers come and go with membership: the transport connects to any peer the
 * driver addresses with a "host:port", and accepts any node of the cluster.
 *
 * Inbound: every frame is decoded against the schema before the machine sees it. A malformed
 * or oversized frame, bad JSON, a bad shape or a missing Hello closes that one connection with a
 * log line; every other connection and client is unaffected.
 *
 * Outbound: `send` is synchronous and never blocks. Messages queue per peer (bounded: the
 * oldest is dropped when full) and the queues are flushed once per event loop turn, so the
 * messages of a turn leave as one socket write per peer. A peer that is unreachable is retried
 * with exponential backoff (reconnectMinMs doubling to reconnectMaxMs); once it has been away
 * for dropAfterDisconnectedMs its queue is dropped and new messages to it are dropped at once,
 * until it is back. Every drop is counted. The storage machine tolerates lost messages (its
 * requests time out), so the transport never retransmits.
 *
 * Time (how long a peer has been away, the reconnect backoff, the Hello timeout) is the node
 * clock's (`TransportOptions.clock`, the `NodeClock` service of impl/node/runtime.ts).
 *
 * Deliberately not here: authentication beyond the cluster name, encryption, any knowledge of
 * what the messages mean.
 */
import * as net from "node:net"
import { Effect, Either, type Scope } from "effect"
import type { NodeId } from "../core/ids.ts"
import type { PeerMessage } from "../core/messages.ts"
import { encodeFrame, encodeFrames, FrameDecoder } from "../wire/frame.ts"
import { decodeHello, decodePeerMessage, encodeJson, type Hello } from "../wire/schema.ts"
import { type Address, type Config, parseAddress, showAddress } from "./config.ts"
import type { Log } from "./log.ts"
import type { Cancel, ClockShape } from "./runtime.ts"

export interface PeerStatus {
  readonly id: NodeId
  readonly address: string
  readonly connected: boolean
  readonly queued: number
}

export interface TransportStats {
  /** Messages written to sockets. */
  sent: number
  /** Messages received and decoded. */
  received: number
  /** Messages dropped: queue full, peer away too long, or too large to send. */
  dropped: number
  /** Inbound connections closed for bad input (malformed frame, wrong cluster, …). */
  rejectedConnections: number
  /** Inbound connections currently open (after or before Hello). */
  inboundConnections: number
}

export interface Transport {
  /**
   * Queue `message` for `to`; it leaves at the end of this event loop turn. Never throws.
   * `address` ("host:port"): where `to` listens; needed the first time a peer outside the
   * boot-time member list is addressed (a joining node, a seed), and it updates a peer that
   * moved.
   */
  readonly send: (to: NodeId, message: PeerMessage, address?: string | undefined) => void
  readonly stats: () => Readonly<TransportStats>
  readonly peers: () => ReadonlyArray<PeerStatus>
  /** Stop connecting to a peer that left the cluster for good, and drop what is queued for it. */
  readonly forget: (id: NodeId) => void
  /** The address the peer listener is bound to. */
  readonly listening: Address
}

export interface TransportOptions {
  readonly config: Config
  readonly log: Log
  /**
   * Time and timers (the `NodeClock` service, impl/node/runtime.ts): how long a peer has been
   * away, the reconnect backoff and the Hello timeout.
   */
  readonly clock: ClockShape
  /** Called for every decoded message, synchronously, in arrival order per connection. */
  readonly onMessage: (from: NodeId, message: PeerMessage) => void
}

/** Inbound connections that have not sent Hello within this time are closed. */
const HELLO_TIMEOUT_MS = 5000
/** Bytes buffered in a socket beyond which we stop writing and wait for 'drain'. */
const SOCKET_BUFFER_BYTES_MAX = 8 * 1024 * 1024

/** A FIFO of payloads with O(1) push and drop-oldest. */
class PayloadQueue {
  private items: Array<string> = []
  private head = 0

  get length(): number {
    return this.items.length - this.head
  }

  push(item: string): void {
    this.items.push(item)
  }

  dropOldest(): void {
    this.head++
    if (this.head > 1024 && this.head * 2 > this.items.length) {
      this.items = this.items.slice(this.head)
      this.head = 0
    }
  }

  takeAll(): Array<string> {
    const out = this.head === 0 ? this.items : this.items.slice(this.head)
    this.items = []
    this.head = 0
    return out
  }

  clear(): number {
    const n = this.length
    this.items = []
    this.head = 0
    return n
  }
}

interface Outbound {
  readonly id: NodeId
  address: Address
  /** `address` as "host:port", as the membership view spells it. */
  addressText: string
  socket: net.Socket | undefined
  connected: boolean
  /** When the connection was lost (or first tried); undefined while connected. */
  awaySince: number | undefined
  /** Logged "unreachable" since the last successful connection. */
  reportedAway: boolean
  backoffMs: number
  /** Cancels the reconnect waiting out its backoff, if one is. */
  retry: Cancel | undefined
  readonly queue: PayloadQueue
  /** Waiting for 'drain' before writing more. */
  blocked: boolean
}

const errorText = (e: unknown): string =>
  e instanceof Error ? ((e as NodeJS.ErrnoException).code ?? e.message) : String(e)

/** Start the peer listener and the outbound connections; all are closed with the scope. */
export const make = (options: TransportOptions): Effect.Effect<Transport, Error, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.async<TransportImpl, Error>((resume) => {
      const transport = new TransportImpl(options)
      transport.listen(
        () => resume(Effect.succeed(transport)),
        (e) => resume(Effect.fail(e)),
      )
    }),
    (transport) => Effect.promise(() => transport.close()),
  )

class TransportImpl implements Transport {
  private readonly config: Config
  private readonly log: Log
  private readonly clock: ClockShape
  private readonly onMessage: (from: NodeId, message: PeerMessage) => void
  private readonly server: net.Server
  private readonly outbound = new Map<NodeId, Outbound>()
  private readonly inbound = new Set<net.Socket>()
  /** Peers removed from the cluster: a removed id never comes back, so never reconnect. */
  private readonly forgotten = new Set<NodeId>()
  private readonly dirty = new Set<Outbound>()
  private flushScheduled = false
  private closed = false
  private reportedAllConnected = false
  private readonly hello: Buffer
  private readonly counters: TransportStats = {
    sent: 0,
    received: 0,
    dropped: 0,
    rejectedConnections: 0,
    inboundConnections: 0,
  }
  listening: Address

  constructor(options: TransportOptions) {
    this.config = options.config
    this.log = options.log
    this.clock = options.clock
    this.onMessage = options.onMessage
    this.listening = options.config.peer
    const hello: Hello = {
      _tag: "Hello",
      from: this.config.id,
      cluster: this.config.cluster,
      address: showAddress(this.config.advertise),
    }
    this.hello = encodeFrame(encodeJson(hello))
    this.server = net.createServer({ noDelay: true }, (socket) => this.accept(socket))
    // Under Chord routing the members are only seeds: connect to peers as the machine names them.
    for (const member of this.config.routing === "chord" ? [] : this.config.members) {
      if (member.id === this.config.id) continue
      this.outbound.set(member.id, this.newPeer(member.id, member.peerAddress))
    }
  }

  private newPeer(id: NodeId, address: Address): Outbound {
    return {
      id,
      address,
      addressText: showAddress(address),
      socket: undefined,
      connected: false,
      awaySince: this.clock.now(),
      reportedAway: false,
      backoffMs: this.config.reconnectMinMs,
      retry: undefined,
      queue: new PayloadQueue(),
      blocked: false,
    }
  }

  /** The outbound peer for `to`, created (and connected) on first sight of its address. */
  private peerFor(to: NodeId, address: string | undefined): Outbound | undefined {
    const known = this.outbound.get(to)
    if (address === undefined || to === this.config.id) return known
    if (known !== undefined && known.addressText === address) return known
    const parsed = parseAddress(address)
    if (parsed === undefined) return known
    if (known === undefined) {
      const peer = this.newPeer(to, parsed)
      this.outbound.set(to, peer)
      if (!this.closed) this.connect(peer)
      return peer
    }
    // The peer moved (restarted elsewhere): reconnect to where it says it is now.
    this.log.info(`peer ${to} moved from ${showAddress(known.address)} to ${address}`)
    known.address = parsed
    known.addressText = address
    known.backoffMs = this.config.reconnectMinMs
    if (known.socket !== undefined) known.socket.destroy()
    else if (known.retry !== undefined) this.reconnectNow(to, true)
    return known
  }

  listen(onListening: () => void, onError: (e: Error) => void): void {
    const fail = (e: Error) => {
      const where = showAddress(this.config.peer)
      onError(new Error(`cannot listen for peers on ${where}: ${errorText(e)}`))
    }
    this.server.once("error", fail)
    this.server.listen(this.config.peer.port, this.config.peer.host, () => {
      this.server.off("error", fail)
      this.server.on("error", (e) => this.log.error(`peer listener: ${errorText(e)}`))
      const bound = this.server.address()
      if (bound !== null && typeof bound === "object") {
        this.listening = { host: this.config.peer.host, port: bound.port }
      }
      for (const peer of this.outbound.values()) this.connect(peer)
      this.maybeReportAllConnected()
      onListening()
    })
  }

  // -------------------------------------------------------------------------------------------
  // Sending

  send(to: NodeId, message: PeerMessage, address?: string | undefined): void {
    if (this.forgotten.has(to)) {
      this.counters.dropped++
      return
    }
    const peer = this.peerFor(to, address)
    if (peer === undefined) {
      if (to === this.config.id) {
        // The machine never addresses itself; if it ever does, loop back on the next turn.
        setImmediate(() => this.deliver(to, message))
      } else {
        this.counters.dropped++
      }
      return
    }
    if (!peer.connected && this.awayTooLong(peer, this.clock.now())) {
      this.counters.dropped++
      return
    }
    const payload = encodeJson(message)
    // UTF-8 takes at most 3 bytes per UTF-16 unit: measure only payloads that might be too big.
    if (
      payload.length * 3 > this.config.maxFrameBytes &&
      Buffer.byteLength(payload, "utf8") > this.config.maxFrameBytes
    ) {
      this.counters.dropped++
      this.log.warn(`dropped a ${message._tag} to ${to}: larger than the frame limit`)
      return
    }
    peer.queue.push(payload)
    if (peer.queue.length > this.config.sendQueueMax) {
      peer.queue.dropOldest()
      this.counters.dropped++
    }
    if (peer.connected) this.markDirty(peer)
  }

  private awayTooLong(peer: Outbound, now: number): boolean {
    if (
      peer.awaySince === undefined ||
      now - peer.awaySince < this.config.dropAfterDisconnectedMs
    ) {
      return false
    }
    this.counters.dropped += peer.queue.clear()
    return true
  }

  private markDirty(peer: Outbound): void {
    this.dirty.add(peer)
    if (this.flushScheduled) return
    this.flushScheduled = true
    setImmediate(() => this.flushAll())
  }

  private flushAll(): void {
    this.flushScheduled = false
    for (const peer of this.dirty) this.flush(peer)
    this.dirty.clear()
  }

  /** Write everything queued for `peer` in one socket write. */
  private flush(peer: Outbound): void {
    const socket = peer.socket
    if (!peer.connected || socket === undefined || peer.blocked || peer.queue.length === 0) return
    const payloads = peer.queue.takeAll()
    this.counters.sent += payloads.length
    const ok = socket.write(encodeFrames(payloads))
    if (!ok && socket.writableLength > SOCKET_BUFFER_BYTES_MAX) {
      // Let the kernel catch up; meanwhile the bounded queue absorbs (and drops) the excess.
      peer.blocked = true
      socket.once("drain", () => {
        peer.blocked = false
        this.flush(peer)
      })
    }
  }

  // -------------------------------------------------------------------------------------------
  // Outbound connections

  private connect(peer: Outbound): void {
    if (this.closed) return
    peer.retry = undefined
    const socket = net.connect({
      host: peer.address.host,
      port: peer.address.port,
      noDelay: true,
    })
    peer.socket = socket
    socket.on("connect", () => {
      peer.connected = true
      peer.awaySince = undefined
      peer.backoffMs = this.config.reconnectMinMs
      if (peer.reportedAway) this.log.info(`peer ${peer.id} is reachable again`)
      peer.reportedAway = false
      this.maybeReportAllConnected()
      socket.write(this.hello)
      this.flush(peer)
    })
    // Peers never write on our outbound connections; discard anything that arrives.
    socket.on("data", () => {})
    socket.on("error", (e) => {
      // Peers start in any order: stay quiet until one has been away longer than a restart.
      const now = this.clock.now()
      const awayMs = now - (peer.awaySince ?? now)
      if (peer.reportedAway || this.closed || awayMs < this.config.dropAfterDisconnectedMs) return
      peer.reportedAway = true
      this.log.warn(
        `peer ${peer.id} at ${showAddress(peer.address)} unreachable for ${awayMs} ms ` +
          `(${errorText(e)}); retrying, and dropping messages to it meanwhile`,
      )
    })
    socket.on("close", () => {
      if (peer.socket === socket) peer.socket = undefined
      peer.blocked = false
      // Forgotten (removed from the cluster): no reconnecting, no log.
      if (this.outbound.get(peer.id) !== peer) return
      if (peer.connected) {
        peer.connected = false
        peer.awaySince = this.clock.now()
        if (!peer.reportedAway && !this.closed) {
          peer.reportedAway = true
          this.log.warn(`lost connection to peer ${peer.id}; reconnecting`)
        }
      }
      if (this.closed) return
      const now = this.clock.now()
      peer.retry = this.clock.schedule(now + peer.backoffMs, () => this.connect(peer))
      peer.backoffMs = Math.min(peer.backoffMs * 2, this.config.reconnectMaxMs)
      this.awayTooLong(peer, now)
    })
  }

  /**
   * A peer just connected to us, so it is up: if our connection to it is waiting out a
   * backoff, try now rather than leave it unable to hear from us for up to reconnectMaxMs.
   */
  private reconnectNow(id: NodeId, force = false): void {
    const peer = this.outbound.get(id)
    if (peer === undefined || peer.connected || peer.retry === undefined || this.closed) return
    if (!force && peer.backoffMs <= this.config.reconnectMinMs) return
    peer.retry()
    peer.backoffMs = this.config.reconnectMinMs
    this.connect(peer)
  }

  /** Log once, the first time every peer is connected (start-up is quiet until then). */
  private maybeReportAllConnected(): void {
    if (this.reportedAllConnected) return
    for (const peer of this.outbound.values()) if (!peer.connected) return
    this.reportedAllConnected = true
    if (this.outbound.size > 0) this.log.info(`connected to all ${this.outbound.size} peers`)
  }

  // -------------------------------------------------------------------------------------------
  // Inbound connections

  private accept(socket: net.Socket): void {
    if (this.closed) {
      socket.destroy()
      return
    }
    socket.setNoDelay(true)
    this.inbound.add(socket)
    this.counters.inboundConnections++
    const remote = `${socket.remoteAddress}:${socket.remotePort}`
    const decoder = new FrameDecoder({ frameBytesMax: this.config.maxFrameBytes })
    let from: NodeId | undefined
    let rejected = false
    const reject = (reason: string): void => {
      if (rejected) return
      rejected = true
      this.counters.rejectedConnections++
      const who = from === undefined ? remote : `${from} (${remote})`
      this.log.warn(`closing peer connection from ${who}: ${reason}`)
      socket.destroy()
    }
    const cancelHello = this.clock.schedule(this.clock.now() + HELLO_TIMEOUT_MS, () =>
      reject(`no Hello within ${HELLO_TIMEOUT_MS} ms`),
    )
    socket.on("data", (chunk: Buffer) => {
      if (rejected) return
      const { frames, error } = decoder.push(chunk)
      for (const frame of frames) {
        if (from === undefined) {
          const hello = decodeHello(frame)
          if (Either.isLeft(hello)) return reject(`bad handshake: ${hello.left.reason}`)
          const reason = this.refuse(hello.right)
          if (reason !== undefined) return reject(reason)
          from = hello.right.from
          cancelHello()
          // A caller we never heard of (Chord routing: nodes know only their neighbours) can
          // be answered: its Hello says where it listens.
          if (!this.outbound.has(from) && !this.forgotten.has(from)) {
            this.peerFor(from, hello.right.address)
          }
          this.reconnectNow(from)
          continue
        }
        const message = decodePeerMessage(frame)
        if (Either.isLeft(message)) return reject(message.left.reason)
        this.counters.received++
        this.deliver(from, message.right)
        if (rejected || this.closed) return
      }
      if (error !== undefined) reject(error.message)
    })
    socket.on("error", () => {})
    socket.on("close", () => {
      cancelHello()
      this.inbound.delete(socket)
      this.counters.inboundConnections--
    })
  }

  /** Why a Hello is refused, or undefined to accept it. */
  private refuse(hello: Hello): string | undefined {
    if (hello.cluster !== this.config.cluster) {
      return `wrong cluster "${hello.cluster}" (this node is in "${this.config.cluster}")`
    }
    if (hello.from === this.config.id) return `a peer claims this node's own id "${hello.from}"`
    return undefined
  }

  private deliver(from: NodeId, message: PeerMessage): void {
    try {
      this.onMessage(from, message)
    } catch (e) {
      this.log.error(`handling ${message._tag} from ${from} failed: ${errorText(e)}`)
    }
  }

  forget(id: NodeId): void {
    this.forgotten.add(id)
    const peer = this.outbound.get(id)
    if (peer === undefined) return
    this.outbound.delete(id)
    this.dirty.delete(peer)
    peer.retry?.()
    peer.retry = undefined
    this.counters.dropped += peer.queue.clear()
    const socket = peer.socket
    peer.socket = undefined
    peer.connected = false
    socket?.destroy()
  }

  // -------------------------------------------------------------------------------------------
  // Status and shutdown

  stats(): Readonly<TransportStats> {
    return { ...this.counters }
  }

  peers(): ReadonlyArray<PeerStatus> {
    return [...this.outbound.values()].map((p) => ({
      id: p.id,
      address: showAddress(p.address),
      connected: p.connected,
      queued: p.queue.length,
    }))
  }

  /** Flush what is queued to connected peers, then close every socket and the listener. */
  close(): Promise<void> {
    if (this.closed) return Promise.resolve()
    this.flushAll()
    this.closed = true
    for (const peer of this.outbound.values()) {
      peer.retry?.()
      peer.socket?.end()
      peer.socket?.destroySoon()
    }
    for (const socket of this.inbound) socket.destroy()
    return new Promise((resolve) => this.server.close(() => resolve()))
  }
}
