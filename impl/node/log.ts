/**
 * Logging for the node runtime: Effect's logger with a compact one-line format, and `Log`, a
 * plain synchronous facade over it for socket callbacks (which run outside any fiber). Logging
 * is for rare events (connections, errors, startup); the per-message path never logs.
 */
import { Cause, Effect, HashMap, type Layer, Logger, LogLevel, Runtime } from "effect"

export interface Log {
  readonly info: (message: string) => void
  readonly warn: (message: string) => void
  readonly error: (message: string) => void
}

const levelText = (level: LogLevel.LogLevel): string => level.label.padEnd(5)

const messageText = (message: unknown): string => {
  const parts = Array.isArray(message) ? message : [message]
  return parts.map((p) => (typeof p === "string" ? p : JSON.stringify(p))).join(" ")
}

/** `2025-01-01T12:00:00.000Z INFO  message key=value`, one line, to stdout (errors: stderr). */
export const compactLogger = Logger.make<unknown, void>(
  ({ logLevel, message, date, cause, annotations }) => {
    let line = `${date.toISOString()} ${levelText(logLevel)} ${messageText(message)}`
    for (const [key, value] of HashMap.toEntries(annotations)) {
      line += ` ${key}=${typeof value === "string" ? value : JSON.stringify(value)}`
    }
    if (!Cause.isEmpty(cause)) line += ` cause=${Cause.pretty(cause).replace(/\s*\n\s*/g, " | ")}`
    if (LogLevel.greaterThanEqual(logLevel, LogLevel.Error)) process.stderr.write(`${line}\n`)
    else process.stdout.write(`${line}\n`)
  },
)

export const layer: Layer.Layer<never> = Logger.replace(Logger.defaultLogger, compactLogger)

/** A synchronous facade over the current runtime's logger. */
export const make: Effect.Effect<Log> = Effect.map(Effect.runtime<never>(), (runtime) => {
  const run = Runtime.runSync(runtime)
  return {
    info: (message) => run(Effect.logInfo(message)),
    warn: (message) => run(Effect.logWarning(message)),
    error: (message) => run(Effect.logError(message)),
  }
})
