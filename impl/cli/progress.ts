/**
 * A tiny progress reporter for long CLI work, on stderr so that stdout stays clean for tables.
 *
 * On a TTY it redraws one line (`label [#####.....] 45% 12.3s`) at most ten times a second; on
 * anything else (a pipe, a CI log) it prints a plain line at every 10 % step instead, so logs
 * stay short and readable. Wall-clock time is used only for the display, never for results.
 */

export interface Progress {
  /** Report that `done` of `total` units are finished. */
  readonly update: (done: number) => void
  /** Finish the line (prints the final state). */
  readonly finish: () => void
}

export interface ProgressOptions {
  readonly stream?: NodeJS.WriteStream
  readonly width?: number
}

const BAR_WIDTH = 30
const REDRAW_MS = 100

export const start = (label: string, total: number, options: ProgressOptions = {}): Progress => {
  const stream = options.stream ?? process.stderr
  const tty = stream.isTTY === true
  const width = options.width ?? BAR_WIDTH
  const begun = performance.now()
  let lastDraw = 0
  let lastDecile = -1
  let finished = false

  const elapsed = () => ((performance.now() - begun) / 1000).toFixed(1)
  const fraction = (done: number) => (total > 0 ? Math.min(1, Math.max(0, done / total)) : 1)

  const draw = (done: number) => {
    const f = fraction(done)
    const filled = Math.round(f * width)
    const bar = `${"#".repeat(filled)}${".".repeat(width - filled)}`
    stream.write(`\r${label} [${bar}] ${(f * 100).toFixed(0).padStart(3)}% ${elapsed()}s\x1b[K`)
  }

  const update = (done: number) => {
    if (finished) return
    if (tty) {
      const now = performance.now()
      if (now - lastDraw < REDRAW_MS) return
      lastDraw = now
      draw(done)
      return
    }
    const decile = Math.floor(fraction(done) * 10)
    if (decile > lastDecile && decile < 10) {
      lastDecile = decile
      stream.write(`${label}: ${decile * 10}% (${elapsed()}s)\n`)
    }
  }

  const finish = () => {
    if (finished) return
    finished = true
    if (tty) {
      draw(total)
      stream.write("\n")
    } else {
      stream.write(`${label}: 100% (${elapsed()}s)\n`)
    }
  }

  return { update, finish }
}
