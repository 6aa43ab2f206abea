/**
 * The phi-accrual failure detector (Hayashibara, Défago, Yared and Katayama, "The φ Accrual
 * Failure Detector", SRDS 2004), in the form Cassandra uses for gossip (DeCandia et al., SOSP 2007,
 * section 4.8: local, per-observer failure detection).
 *
 * Instead of a boolean, the detector outputs a suspicion level phi = -log10(P(a heartbeat is
 * this late | the peer is alive)), estimated from a bounded window of the peer's recent
 * heartbeat inter-arrival times. phi = 8 means the odds that a live peer would be this silent
 * are 1 in 10^8 under the model; a caller compares phi with a threshold (8 by default).
 *
 * The model: the **exponential distribution** (Cassandra's choice), not the normal one (Akka's).
 * Why: the membership machine learns most heartbeats second-hand, through randomly chosen gossip
 * exchanges, so their inter-arrival times are bursty (two fresh heartbeats a few milliseconds
 * apart, then a gap of two rounds). A normal fit to such samples has a small variance and fires
 * on the first long gap; the exponential depends on the mean alone, is memoryless, and gives a
 * closed form for every bound we state:
 *
 *     P(silence > t) = exp(-t / mean)   so   phi(t) = (t - pause) / (mean * ln 10)
 *
 * with `t` the time since the last heartbeat, `pause` the acceptable pause (silences up to it
 * cost nothing) and `mean` floored at `minStdDevMs` (the standard deviation of an exponential
 * equals its mean, so "minimum standard deviation" is a floor on the mean). Hence phi reaches
 * `threshold` exactly when t = pause + threshold * ln 10 * mean (`suspicionDelayMs`).
 *
 * Two rules keep that delay bounded on both sides:
 *  - intervals longer than `maxSampleIntervalMs` are not recorded (as Cassandra's
 *    MAX_INTERVAL): a partition or a pause must not teach the detector that long silences are
 *    normal, so mean <= max(maxSampleIntervalMs, firstHeartbeatEstimateMs) and detection of a
 *    crash never takes longer than `worstSuspicionDelayMs` after the last heartbeat (FD-1);
 *  - the floor on the mean means no history, however regular, makes the detector suspect a peer
 *    silent for less than `safeSilenceMs` (FD-2).
 *
 * Bootstrap: the first heartbeat of a peer seeds its window with `firstHeartbeatEstimateMs` (as
 * Akka and Cassandra do), so a peer heard once is judged against the expected heartbeat interval
 * rather than an empty history; the seed sample ages out after `windowSize` real samples.
 *
 * Deliberately not here: deciding what counts as a heartbeat (the membership machine does), any
 * clock (`now` comes from the caller and must not decrease per peer), removing a node (suspicion
 * is an opinion of one observer, never a membership change).
 *
 * State is updated in place like the other machines (impl/core/node.ts); the peer map grows by
 * one entry per peer heard and is bounded by the caller's member bound; each window by
 * `windowSize`.
 *
 * Owns: one observer's per-peer windows of heartbeat intervals. Must not: read a clock, or change
 * membership (a suspicion is an opinion the caller acts on).
 *
 * Invariants kept: FD-1, FD-2, FD-3 (spec/membership.md).
 */
import type { NodeId } from "./ids.ts"

export interface Config {
  /** Inter-arrival samples kept per peer (a sliding window). */
  readonly windowSize: number
  /** Floor on the estimated mean interval (= the exponential's standard deviation). */
  readonly minStdDevMs: number
  /** Silence that costs no suspicion at all (GC pauses, a slow gossip round). */
  readonly acceptablePauseMs: number
  /** The interval assumed for a peer heard only once; usually the heartbeat interval. */
  readonly firstHeartbeatEstimateMs: number
  /** Intervals longer than this are not samples (they are outages, not the heartbeat rate). */
  readonly maxSampleIntervalMs: number
}

/** Defaults for a one-second gossip interval (Cassandra's: window 1000, max interval 2 s). */
export const defaults: Config = {
  windowSize: 1000,
  minStdDevMs: 500,
  acceptablePauseMs: 0,
  firstHeartbeatEstimateMs: 1000,
  maxSampleIntervalMs: 2000,
}

/** Default suspicion threshold: 10^-8 odds of a false suspicion under the model. */
export const DEFAULT_THRESHOLD = 8

/** One peer's arrival history. */
interface History {
  /** Arrival time of the latest heartbeat. */
  last: number
  /** Ring buffer of inter-arrival times, at most `windowSize` long. */
  readonly samples: Array<number>
  /** Next slot to overwrite once the buffer is full. */
  head: number
  /** Sum of `samples`, kept incrementally and recomputed once per wrap to shed float drift. */
  sum: number
}

export interface State {
  readonly config: Config
  readonly peers: Map<NodeId, History>
}

export const make = (config: Partial<Config> = {}): State => {
  const c: Config = { ...defaults, ...config }
  if (!Number.isInteger(c.windowSize) || c.windowSize < 1) {
    throw new Error(`phi: windowSize must be a positive integer, got ${c.windowSize}`)
  }
  if (!(c.minStdDevMs > 0) || !(c.firstHeartbeatEstimateMs > 0)) {
    throw new Error("phi: minStdDevMs and firstHeartbeatEstimateMs must be positive")
  }
  if (!(c.acceptablePauseMs >= 0) || !(c.maxSampleIntervalMs > 0)) {
    throw new Error("phi: acceptablePauseMs must be >= 0 and maxSampleIntervalMs > 0")
  }
  return { config: c, peers: new Map() }
}

/** Record a heartbeat of `peer` arriving at `now`. A `now` earlier than the last is ignored. */
export const heartbeat = (state: State, peer: NodeId, now: number): State => {
  const h = state.peers.get(peer)
  const c = state.config
  if (h === undefined) {
    const seed = c.firstHeartbeatEstimateMs
    state.peers.set(peer, { last: now, samples: [seed], head: 0, sum: seed })
    return state
  }
  const interval = now - h.last
  // Time never runs backwards for one driver; a stale call must not rewind `last`.
  if (interval < 0) return state
  h.last = now
  if (interval > c.maxSampleIntervalMs) return state
  if (h.samples.length < c.windowSize) {
    h.samples.push(interval)
    h.sum += interval
    return state
  }
  h.sum += interval - h.samples[h.head]!
  h.samples[h.head] = interval
  h.head = (h.head + 1) % c.windowSize
  if (h.head === 0) h.sum = h.samples.reduce((a, b) => a + b, 0)
  return state
}

/** Forget a peer (it was removed from the cluster). */
export const remove = (state: State, peer: NodeId): State => {
  state.peers.delete(peer)
  return state
}

/** Is `peer` monitored (has it ever sent a heartbeat)? */
export const isMonitored = (state: State, peer: NodeId): boolean => state.peers.has(peer)

/** Mean of the peer's window, before the floor; undefined for a peer never heard. */
export const meanIntervalMs = (state: State, peer: NodeId): number | undefined => {
  const h = state.peers.get(peer)
  return h === undefined ? undefined : h.sum / h.samples.length
}

/** Arrival time of the peer's latest heartbeat; undefined for a peer never heard. */
export const lastHeartbeatAt = (state: State, peer: NodeId): number | undefined =>
  state.peers.get(peer)?.last

/**
 * The suspicion level of `peer` at `now`. A peer never heard has phi 0: the detector has no
 * evidence either way, and the caller decides what an unmonitored peer means.
 */
export const phi = (state: State, peer: NodeId, now: number): number => {
  const h = state.peers.get(peer)
  if (h === undefined) return 0
  const c = state.config
  const silence = now - h.last - c.acceptablePauseMs
  if (silence <= 0) return 0
  const mean = Math.max(h.sum / h.samples.length, c.minStdDevMs)
  return silence / (mean * Math.LN10)
}

/** phi below the threshold: the observer believes the peer is up. */
export const isAvailable = (
  state: State,
  peer: NodeId,
  now: number,
  threshold: number = DEFAULT_THRESHOLD,
): boolean => phi(state, peer, now) < threshold

/**
 * The silence after which phi reaches `threshold` for a window of mean `meanMs`:
 * pause + threshold * ln 10 * max(mean, minStdDev).
 */
export const suspicionDelayMs = (
  config: Config,
  meanMs: number,
  threshold: number = DEFAULT_THRESHOLD,
): number => config.acceptablePauseMs + threshold * Math.LN10 * Math.max(meanMs, config.minStdDevMs)

/**
 * The longest silence a crashed peer can go unsuspected (FD-1): the window mean never exceeds
 * the largest recordable sample or the bootstrap estimate.
 */
export const worstSuspicionDelayMs = (
  config: Config,
  threshold: number = DEFAULT_THRESHOLD,
): number =>
  suspicionDelayMs(
    config,
    Math.max(config.maxSampleIntervalMs, config.firstHeartbeatEstimateMs),
    threshold,
  )

/**
 * The longest silence that never causes a suspicion, whatever the history (FD-2): the mean is
 * at least the floor.
 */
export const safeSilenceMs = (config: Config, threshold: number = DEFAULT_THRESHOLD): number =>
  suspicionDelayMs(config, config.minStdDevMs, threshold)
