/**
 * MEM-4: the gossip machine stepped directly, one event at a time, against a reference model of
 * what each step must do (spec/membership.md): which entries a digest's answer carries and which
 * ids it asks for, what a reply's requests bring back, which received entries the view adopts
 * and which of them feed the failure detector, what news of itself does to a node (a tombstone,
 * an earlier run's entry, a restored store), whom a gossip round talks to, and when a restarted
 * or joining node counts as confirmed and synced (MEM-5).
 *
 * The model keeps its own view, detector and random generator, and is written from the spec's
 * rules rather than from the machine's code paths: a view is a map of entries ordered by the
 * model's own `order` (tombstone, generation, version, heartbeat, then status, addresses and
 * weight), and every answer is stated as a set ("every entry of mine the digest lacks or has
 * older"). Each step's commands are compared exactly (as sets), and after each step
 * the view, the statistics, the liveness verdicts, the phi levels, the ring and pending members,
 * confirmation and sync. Small id and counter domains and a small member bound make equal,
 * older and newer entries, duplicates in one message, and a full view all common; two steps are
 * built from the node's state when they run, as peers in a converged cluster send them: an echo
 * of the node's whole view (every entry equal to the one held), and an ack that carries exactly
 * what the last digest had newer (a node catching up).
 */
import assert from "node:assert/strict"
import fc from "fast-check"
import { NodeId } from "../impl/core/ids.ts"
import * as Membership from "../impl/core/membership.ts"
import * as Phi from "../impl/core/phi.ts"
import * as Rng from "../impl/core/rng.ts"
import { assertFloors, params } from "./helpers/fc.ts"
import { test } from "./helpers/test.ts"

type Entry = Membership.Entry
type Digest = Membership.Digest

const SELF = NodeId("a")
const IDS = ["a", "b", "c", "d"].map(NodeId)
const PHI: Partial<Phi.Config> = { firstHeartbeatEstimateMs: 1000 }

// ---------------------------------------------------------------------------------------------
// Generated inputs

const statusArb = fc.constantFrom<Membership.Status>("joining", "up", "leaving", "removed")
const entryArb: fc.Arbitrary<Entry> = fc.record({
  id: fc.constantFrom(...IDS),
  peerAddress: fc.constantFrom("p1", "p2"),
  clientAddress: fc.constantFrom("c1", "c2"),
  weight: fc.constantFrom(1, 2),
  status: statusArb,
  generation: fc.nat(3),
  version: fc.nat(3),
  heartbeat: fc.nat(4),
})
const digestArb: fc.Arbitrary<Digest> = fc.record({
  id: fc.constantFrom(...IDS),
  removed: fc.boolean(),
  generation: fc.nat(3),
  version: fc.nat(3),
  heartbeat: fc.nat(4),
})
const peerArb = fc.constantFrom(...IDS.slice(1))

type Step =
  | { readonly _tag: "Tick"; readonly dt: number }
  | { readonly _tag: "Digest"; readonly from: NodeId; readonly digests: ReadonlyArray<Digest> }
  | {
      readonly _tag: "Reply"
      readonly from: NodeId
      readonly entries: ReadonlyArray<Entry>
      readonly requests: ReadonlyArray<NodeId>
    }
  | { readonly _tag: "Ack"; readonly from: NodeId; readonly entries: ReadonlyArray<Entry> }
  | { readonly _tag: "Join" }
  | { readonly _tag: "MarkUp" }
  | { readonly _tag: "Leave" }
  | { readonly _tag: "Remove"; readonly node: NodeId }
  | { readonly _tag: "Calm"; readonly since: number | undefined }
  /** Resolved when it runs: the node's whole view sent back as a reply or an ack. */
  | { readonly _tag: "Echo"; readonly from: NodeId; readonly asReply: boolean }
  /** Resolved when it runs: an ack with an entry for each id the last digest had newer. */
  | { readonly _tag: "CatchUp"; readonly from: NodeId }

const dtArb = fc.constantFrom(0, 300, 1000, 1000, 4000, 60_000)
const stepArb: fc.Arbitrary<Step> = fc.oneof(
  { weight: 4, arbitrary: dtArb.map((dt) => ({ _tag: "Tick" as const, dt })) },
  {
    weight: 4,
    arbitrary: fc.record({
      _tag: fc.constant("Digest" as const),
      from: peerArb,
      digests: fc.array(digestArb, { maxLength: 5 }),
    }),
  },
  {
    weight: 3,
    arbitrary: fc.record({
      _tag: fc.constant("Reply" as const),
      from: peerArb,
      entries: fc.array(entryArb, { maxLength: 4 }),
      requests: fc.array(fc.constantFrom(...IDS), { maxLength: 5 }),
    }),
  },
  {
    weight: 3,
    arbitrary: fc.record({
      _tag: fc.constant("Ack" as const),
      from: peerArb,
      entries: fc.array(entryArb, { maxLength: 4 }),
    }),
  },
  { weight: 1, arbitrary: fc.constant({ _tag: "Join" as const }) },
  { weight: 1, arbitrary: fc.constant({ _tag: "MarkUp" as const }) },
  { weight: 1, arbitrary: fc.constant({ _tag: "Leave" as const }) },
  {
    weight: 1,
    arbitrary: fc.record({ _tag: fc.constant("Remove" as const), node: fc.constantFrom(...IDS) }),
  },
  {
    weight: 1,
    arbitrary: fc.record({
      _tag: fc.constant("Calm" as const),
      since: fc.option(fc.nat(10_000), { nil: undefined }),
    }),
  },
  {
    weight: 2,
    arbitrary: fc.record({
      _tag: fc.constant("Echo" as const),
      from: peerArb,
      asReply: fc.boolean(),
    }),
  },
  {
    weight: 2,
    arbitrary: fc.record({ _tag: fc.constant("CatchUp" as const), from: peerArb }),
  },
)

const configArb: fc.Arbitrary<Membership.Config> = fc
  .record({
    restarted: fc.boolean(),
    status: fc.constantFrom(undefined, "joining", "up", "leaving"),
    generation: fc.integer({ min: 1, max: 3 }),
    knownMembers: fc.option(fc.array(entryArb, { maxLength: 4 }), { nil: undefined }),
    seeds: fc.subarray(IDS),
    seedAddress: fc.constantFrom("p1", "s9"),
    randomSeed: fc.integer(),
    maxMembers: fc.constantFrom(2, 3, 4096),
    threshold: fc.constantFrom(undefined, 1, 8, 16),
  })
  .map((c) => ({
    self: { id: SELF, peerAddress: "pa", clientAddress: "ca", weight: 1 },
    seeds: c.seeds.map((id) => ({ id, peerAddress: `${c.seedAddress}-${id}` })),
    generation: c.generation,
    ...(c.status === undefined ? {} : { status: c.status as "joining" | "up" | "leaving" }),
    ...(c.knownMembers === undefined ? {} : { knownMembers: c.knownMembers }),
    restarted: c.restarted,
    randomSeed: c.randomSeed,
    phi: PHI,
    ...(c.threshold === undefined ? {} : { threshold: c.threshold }),
    maxMembers: c.maxMembers,
  }))

// ---------------------------------------------------------------------------------------------
// The reference model

const digestOf = (e: Entry): Digest => ({
  id: e.id,
  removed: e.status === "removed",
  generation: e.generation,
  version: e.version,
  heartbeat: e.heartbeat,
})
/** Lexicographic comparison of two equally long tuples. */
const lex = (a: ReadonlyArray<number | string>, b: ReadonlyArray<number | string>): number => {
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return a[i]! < b[i]! ? -1 : 1
  return 0
}
const digestKey = (d: Digest) => [Number(d.removed), d.generation, d.version, d.heartbeat]
/** `a` is strictly newer than `b` (tombstone, generation, version, heartbeat). */
const newer = (a: Digest, b: Digest): boolean => lex(digestKey(a), digestKey(b)) > 0
/** The spec's order on entries of one id: the digest, then the content as a tie-break. */
const order = (a: Entry, b: Entry): number =>
  lex(digestKey(digestOf(a)), digestKey(digestOf(b))) ||
  lex(
    [a.status, a.peerAddress, a.clientAddress, a.weight],
    [b.status, b.peerAddress, b.clientAddress, b.weight],
  )

class Stopped extends Error {}

interface Counts {
  replies: number
  replyEntries: number
  requests: number
  acks: number
  learned: number
  fresh: number
  selfNews: number
  staleStores: number
  confirmations: number
  syncs: number
  full: number
  probes: number
  seedSends: number
  echoes: number
  caughtUp: number
  removals: number
  steps: number
}

class Model {
  readonly view = new Map<NodeId, Entry>()
  readonly detector: Phi.State
  readonly rng: Rng.Rng
  staleSelf: Entry | undefined = undefined
  confirmed: boolean
  /** What the last digest had newer that is not learned yet; "synced" or "waiting" otherwise. */
  sync: "synced" | "waiting" | Map<NodeId, Digest>
  calmSince: number | undefined = undefined
  readonly stats = { ticks: 0, sent: 0, received: 0, learned: 0 }
  readonly max: number
  readonly threshold: number

  constructor(
    readonly config: Membership.Config,
    now: number,
    readonly counts: Counts,
  ) {
    this.detector = Phi.make(config.phi)
    this.rng = { rng: config.randomSeed | 0 }
    this.max = config.maxMembers ?? Membership.DEFAULT_MAX_MEMBERS
    this.threshold = config.threshold ?? Phi.DEFAULT_THRESHOLD
    this.confirmed = config.restarted !== true
    this.sync = config.restarted !== true && config.status !== "joining" ? "synced" : "waiting"
    this.learn(config.knownMembers ?? [], now)
    // Its own boot entry is not a peer's word.
    this.confirmed = config.restarted !== true
    const own = this.view.get(SELF)
    if (own?.status !== "removed" && config.status !== undefined) this.become(config.status)
  }

  own(): Entry | undefined {
    return this.view.get(SELF)
  }

  /** A new own entry: the version above this run's and any earlier run's news of itself. */
  become(status: "joining" | "up" | "leaving"): void {
    const own = this.own()
    let at: readonly [number, number] = [
      own?.generation ?? this.config.generation,
      own?.version ?? 0,
    ]
    const s = this.staleSelf
    if (
      s !== undefined &&
      (s.generation > at[0] || (s.generation === at[0] && s.version >= at[1]))
    ) {
      at = [s.generation, s.version]
    }
    const self = this.config.self
    this.view.set(SELF, {
      id: SELF,
      peerAddress: self.peerAddress,
      clientAddress: self.clientAddress,
      weight: self.weight,
      status,
      generation: at[0],
      version: at[1] + 1,
      heartbeat: own?.heartbeat ?? 0,
    })
  }

  /** What a peer says of this node: a newer run than this one that it did not write is fatal. */
  checkSelf(d: Digest): void {
    const own = this.own()
    const foreign = own === undefined || newer(d, digestOf(own))
    if (this.config.restarted === true && foreign && d.generation >= this.config.generation) {
      this.counts.staleStores++
      throw new Stopped(String(d.generation))
    }
    if (!this.confirmed) this.counts.confirmations++
    this.confirmed = true
  }

  /** Adopt each entry larger than the one held (new ids while the bound allows). */
  learn(incoming: ReadonlyArray<Entry>, now: number): void {
    for (const e of incoming.slice(0, this.max)) {
      if (e.id === SELF) {
        this.learnSelf(e)
        continue
      }
      const mine = this.view.get(e.id)
      if (mine === undefined && this.view.size >= this.max) {
        this.counts.full++
        continue
      }
      if (mine !== undefined && order(e, mine) <= 0) continue
      this.view.set(e.id, e)
      this.stats.learned++
      this.counts.learned++
      if (e.status === "removed") Phi.remove(this.detector, e.id)
      else if (
        mine === undefined ||
        e.generation > mine.generation ||
        (e.generation === mine.generation && e.heartbeat > mine.heartbeat)
      ) {
        this.counts.fresh++
        Phi.heartbeat(this.detector, e.id, now)
      }
    }
    this.caughtUp()
  }

  learnSelf(e: Entry): void {
    this.counts.selfNews++
    const own = this.own()
    if (e.status === "removed") {
      if (own === undefined || order(e, own) > 0) {
        this.view.set(SELF, e)
        this.stats.learned++
      }
      return
    }
    this.checkSelf(digestOf(e))
    if (own !== undefined && order(e, own) <= 0) return
    if (this.staleSelf === undefined || order(e, this.staleSelf) > 0) this.staleSelf = e
    if (own !== undefined && own.status !== "removed") this.become(own.status)
  }

  caughtUp(): void {
    if (typeof this.sync === "string") return
    for (const [id, d] of this.sync) {
      const mine = this.view.get(id)
      if (mine !== undefined && !newer(d, digestOf(mine))) this.sync.delete(id)
    }
    if (this.sync.size === 0) {
      this.sync = "synced"
      this.counts.syncs++
    }
  }

  available(id: NodeId, now: number): boolean {
    return id === SELF || Phi.isAvailable(this.detector, id, now, this.threshold)
  }

  addressOf(id: NodeId): string | undefined {
    return this.view.get(id)?.peerAddress ?? this.config.seeds.find((s) => s.id === id)?.peerAddress
  }

  /** Every entry of mine the digest lacks or has older; every id it has newer (room allowing). */
  onDigest(from: NodeId, address: string, digests: ReadonlyArray<Digest>): Membership.Command[] {
    const theirs = new Map<NodeId, Digest>()
    for (const d of digests.slice(0, this.max)) theirs.set(d.id, d)
    for (const d of theirs.values()) if (d.id === SELF) this.checkSelf(d)
    const entries = [...this.view.values()].filter((e) => {
      const d = theirs.get(e.id)
      if (d === undefined || newer(digestOf(e), d)) return true
      // The sender names a newer run of itself: it gets back what this node knows of it.
      return e.id === from && newer(d, digestOf(e)) && e.generation !== d.generation
    })
    const requests = [...theirs.values()]
      .filter((d) => {
        const mine = this.view.get(d.id)
        return mine === undefined ? this.view.size < this.max : newer(d, digestOf(mine))
      })
      .map((d) => d.id)
    if (this.sync !== "synced") {
      this.sync = new Map(requests.filter((id) => id !== SELF).map((id) => [id, theirs.get(id)!]))
      this.caughtUp()
    }
    if (entries.length === 0 && requests.length === 0) return []
    this.counts.replies++
    this.counts.replyEntries += entries.length
    this.counts.requests += requests.length
    return [
      { _tag: "Send", to: from, address, message: { _tag: "GossipReply", entries, requests } },
    ]
  }

  onReply(
    from: NodeId,
    entries: ReadonlyArray<Entry>,
    requests: ReadonlyArray<NodeId>,
    now: number,
  ) {
    this.learn(entries, now)
    if (this.sync !== "synced") this.counts.syncs++
    this.sync = "synced"
    const back = requests
      .slice(0, this.max)
      .map((id) => this.view.get(id))
      .filter((e) => e !== undefined)
    const address = this.addressOf(from)
    if (back.length === 0 || address === undefined) return []
    this.counts.acks++
    return [
      {
        _tag: "Send" as const,
        to: from,
        address,
        message: { _tag: "GossipAck" as const, entries: back },
      },
    ]
  }

  /** Heartbeat; then a live peer, maybe an unreachable one, maybe a seed (spec/membership.md). */
  onTick(now: number): Membership.Command[] {
    this.stats.ticks++
    const own = this.own()
    if (own !== undefined && own.status !== "removed") {
      const { calm: _c, ...rest } = own
      this.view.set(SELF, {
        ...rest,
        ...(this.calmSince === undefined ? {} : { calm: this.calmSince }),
        heartbeat: own.heartbeat + 1,
        at: now,
      })
    }
    const peers = [...this.view.values()].filter((e) => e.id !== SELF && e.status !== "removed")
    const live = peers.filter((e) => this.available(e.id, now))
    const unreachable = peers.filter((e) => !this.available(e.id, now))
    const message: Membership.Message = {
      _tag: "GossipDigest",
      address: this.config.self.peerAddress,
      digests: [...this.view.values()].map(digestOf),
    }
    const out: Array<Membership.Command> = []
    const send = (to: NodeId, address: string) => {
      if (!out.some((c) => c.to === to)) out.push({ _tag: "Send", to, address, message })
    }
    const pick = <T>(xs: ReadonlyArray<T>): T => xs[Math.floor(Rng.uniform(this.rng) * xs.length)]!
    const seeds = this.config.seeds
    let toSeed = false
    if (live.length > 0) {
      const t = pick(live)
      send(t.id, t.peerAddress)
      toSeed = seeds.some((s) => s.id === t.id)
    }
    if (unreachable.length > 0 && Rng.uniform(this.rng) < unreachable.length / (live.length + 1)) {
      const t = pick(unreachable)
      this.counts.probes++
      send(t.id, t.peerAddress)
    }
    const others = seeds.filter((s) => s.id !== SELF)
    if ((!toSeed || live.length < seeds.length) && others.length > 0) {
      const p = live.length === 0 ? 1 : others.length / (peers.length + 1)
      if (Rng.uniform(this.rng) < p) {
        const s = pick(others)
        this.counts.seedSends++
        send(s.id, this.view.get(s.id)?.peerAddress ?? s.peerAddress)
      }
    }
    return out
  }

  onRemove(node: NodeId): void {
    const current = this.view.get(node) ?? (node === SELF ? this.staleSelf : undefined)
    if (current?.status === "removed") return
    if (current === undefined && this.view.size >= this.max) return
    this.counts.removals++
    this.view.set(
      node,
      current === undefined
        ? {
            id: node,
            peerAddress: "",
            clientAddress: "",
            weight: 0,
            status: "removed",
            generation: 0,
            version: 1,
            heartbeat: 0,
          }
        : { ...current, status: "removed", version: current.version + 1 },
    )
    Phi.remove(this.detector, node)
  }

  /** The model's step; throws `Stopped` where the machine must throw StaleStore. */
  step(s: Resolved, now: number): Membership.Command[] {
    let out: Membership.Command[] = []
    switch (s._tag) {
      case "Tick":
        out = this.onTick(now)
        break
      case "Digest":
        this.stats.received++
        out = this.onDigest(s.from, `addr-${s.from}`, s.digests)
        break
      case "Reply":
        this.stats.received++
        out = this.onReply(s.from, s.entries, s.requests, now)
        break
      case "Ack":
        this.stats.received++
        this.learn(s.entries, now)
        break
      case "Join":
        if (this.own() === undefined) this.become("joining")
        break
      case "MarkUp":
        if (this.own()?.status === "joining") this.become("up")
        break
      case "Leave":
        if (this.own()?.status === "up") this.become("leaving")
        break
      case "Remove":
        this.onRemove(s.node)
        break
      case "Calm":
        this.calmSince = s.since
        break
    }
    this.stats.sent += out.length
    return out
  }
}

/** A step as it is delivered: echoes and catch-ups become the reply or ack they stand for. */
type Resolved = Exclude<Step, { readonly _tag: "Echo" | "CatchUp" }>

const resolve = (s: Step, m: Model): Resolved => {
  switch (s._tag) {
    case "Echo": {
      const entries = [...m.view.values()]
      if (entries.length > 0) m.counts.echoes++
      return s.asReply
        ? { _tag: "Reply", from: s.from, entries, requests: [] }
        : { _tag: "Ack", from: s.from, entries }
    }
    case "CatchUp": {
      const awaited = typeof m.sync === "string" ? [] : [...m.sync.values()]
      if (awaited.length > 0) m.counts.caughtUp++
      const entries = awaited.map(
        (d): Entry => ({
          id: d.id,
          peerAddress: "p1",
          clientAddress: "c1",
          weight: 1,
          status: d.removed ? "removed" : "up",
          generation: d.generation,
          version: d.version,
          heartbeat: d.heartbeat,
        }),
      )
      return { _tag: "Ack", from: s.from, entries }
    }
    default:
      return s
  }
}

const event = (s: Resolved, now: number): Membership.Event | undefined => {
  switch (s._tag) {
    case "Tick":
      return { _tag: "TickElapsed", now }
    case "Digest":
      return {
        _tag: "MessageReceived",
        now,
        from: s.from,
        message: { _tag: "GossipDigest", address: `addr-${s.from}`, digests: s.digests },
      }
    case "Reply":
      return {
        _tag: "MessageReceived",
        now,
        from: s.from,
        message: { _tag: "GossipReply", entries: s.entries, requests: s.requests },
      }
    case "Ack":
      return {
        _tag: "MessageReceived",
        now,
        from: s.from,
        message: { _tag: "GossipAck", entries: s.entries },
      }
    case "Join":
      return { _tag: "JoinRequested", now }
    case "MarkUp":
      return { _tag: "MarkUp", now }
    case "Leave":
      return { _tag: "LeaveRequested", now }
    case "Remove":
      return { _tag: "RemoveRequested", now, node: s.node }
    case "Calm":
      return undefined
  }
}

// Order-free comparison of entries and commands (a set of answers, not a sequence).
const byId = (a: { id: string }, b: { id: string }) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0)
const sortedEntries = (es: Iterable<Entry>) => [...es].sort((a, b) => byId(a, b) || order(a, b))
const normal = (cs: ReadonlyArray<Membership.Command>) =>
  cs
    .map((c) => {
      const m = c.message
      const message =
        m._tag === "GossipDigest"
          ? { ...m, digests: [...m.digests].sort(byId) }
          : m._tag === "GossipReply"
            ? { ...m, entries: sortedEntries(m.entries), requests: [...m.requests].sort() }
            : { ...m, entries: sortedEntries(m.entries) }
      return { ...c, message }
    })
    .sort((a, b) => (a.to < b.to ? -1 : a.to > b.to ? 1 : 0))

/** Run both; either both stop with a stale store or both agree on everything observable. */
const compareStep = (
  what: string,
  real: () => ReadonlyArray<Membership.Command>,
  model: () => ReadonlyArray<Membership.Command>,
): "stopped" | readonly [ReadonlyArray<Membership.Command>, ReadonlyArray<Membership.Command>] => {
  let got: ReadonlyArray<Membership.Command> | Membership.StaleStore
  let want: ReadonlyArray<Membership.Command> | Stopped
  try {
    got = real()
  } catch (e) {
    if (!(e instanceof Membership.StaleStore)) throw e
    got = e
  }
  try {
    want = model()
  } catch (e) {
    if (!(e instanceof Stopped)) throw e
    want = e
  }
  if (want instanceof Stopped || got instanceof Membership.StaleStore) {
    assert.ok(
      got instanceof Membership.StaleStore,
      `${what}: the machine must stop on a stale store`,
    )
    assert.ok(
      want instanceof Stopped,
      `${what}: the machine stopped (${(got as Error).message}) where the model goes on`,
    )
    assert.equal(got.name, "StaleStore")
    assert.equal(String(got.known), want.message, `${what}: the generation the cluster knows`)
    assert.match(got.message, /older than an earlier run .* restored from a copy/)
    assert.match(got.message, /start the node with an empty data directory and it is refilled/)
    return "stopped"
  }
  return [got, want]
}

const agree = (what: string, state: Membership.State, m: Model, now: number): void => {
  assert.deepEqual(
    sortedEntries(state.entries.values()),
    sortedEntries(m.view.values()),
    `${what}: view`,
  )
  assert.deepEqual({ ...state.stats }, m.stats, `${what}: stats`)
  assert.equal(Membership.confirmed(state), m.confirmed, `${what}: confirmed`)
  assert.equal(Membership.synced(state), m.sync === "synced", `${what}: synced`)
  assert.deepEqual(state.staleSelf, m.staleSelf, `${what}: news of an earlier run`)
  assert.equal(Membership.isRemoved(state), m.own()?.status === "removed", `${what}: removed`)
  const members = [...m.view.values()].filter((e) => e.status !== "removed")
  assert.deepEqual(
    Membership.liveMembers(state, now).map((e) => e.id),
    members
      .filter((e) => m.available(e.id, now))
      .map((e) => e.id)
      .sort(),
    `${what}: live members`,
  )
  assert.deepEqual(
    Membership.down(state, now),
    members
      .filter((e) => !m.available(e.id, now))
      .map((e) => e.id)
      .sort(),
    `${what}: down`,
  )
  for (const id of IDS) {
    const want = id === SELF ? 0 : Phi.phi(m.detector, id, now)
    assert.equal(Membership.phiOf(state, id, now), want, `${what}: phi of ${id}`)
  }
  const ring = (statuses: ReadonlyArray<Membership.Status>) =>
    [...m.view.values()]
      .filter((e) => statuses.includes(e.status))
      .sort(byId)
      .map((e) => ({ id: e.id, weight: e.weight }))
  assert.deepEqual(Membership.ringMembers(state), ring(["up", "leaving"]), `${what}: ring members`)
  assert.deepEqual(Membership.pendingMembers(state), ring(["joining"]), `${what}: pending members`)
}

const newCounts = (): Counts => ({
  replies: 0,
  replyEntries: 0,
  requests: 0,
  acks: 0,
  learned: 0,
  fresh: 0,
  selfNews: 0,
  staleStores: 0,
  confirmations: 0,
  syncs: 0,
  full: 0,
  probes: 0,
  seedSends: 0,
  echoes: 0,
  caughtUp: 0,
  removals: 0,
  steps: 0,
})

test("MEM-4, MEM-5: every gossip leg, round and own-news step does what the reference model says", () => {
  const counts = newCounts()
  fc.assert(
    fc.property(configArb, fc.array(stepArb, { maxLength: 40 }), (config, steps) => {
      let now = 1_000
      let state!: Membership.State
      let model!: Model
      const started = compareStep(
        "init",
        () => {
          state = Membership.init(config, now)
          return []
        },
        () => {
          model = new Model(config, now, counts)
          return []
        },
      )
      if (started === "stopped") return
      agree("init", state, model, now)
      for (const [i, generated] of steps.entries()) {
        const s = resolve(generated, model)
        if (s._tag === "Tick") now += s.dt
        const what = `step ${i} (${s._tag})`
        const e = event(s, now)
        const result = compareStep(
          what,
          () => {
            if (e === undefined) {
              state.calmSince = (s as { since: number | undefined }).since
              return []
            }
            return Membership.step(state, e)[1]
          },
          () => model.step(s, now),
        )
        if (result === "stopped") return
        counts.steps++
        assert.deepEqual(normal(result[0]), normal(result[1]), `${what}: commands`)
        agree(what, state, model, now)
      }
    }),
    params(1000),
  )
  console.log(`MEM-4 counts: ${JSON.stringify(counts)}`)
  // Floors at about half the smallest of 14 clean runs sampled by `npm run floors` (2026-12-04;
  // replyEntries drew 5043 against a floor of 5000 then).
  assertFloors(counts, {
    steps: 10_000,
    replies: 1100,
    replyEntries: 2500,
    requests: 750,
    acks: 500,
    learned: 1500,
    fresh: 700,
    selfNews: 1600,
    staleStores: 180,
    confirmations: 200,
    syncs: 280,
    full: 500,
    probes: 380,
    seedSends: 750,
    removals: 140,
    echoes: 500,
    caughtUp: 8,
  })
})
