/**
 * The simulators' event queue: a binary min-heap on (at, seq). Ties break by scheduling order
 * (`seq`), so that runs are deterministic.
 */

export interface Scheduled {
  readonly at: number
  readonly seq: number
}

const before = (x: Scheduled, y: Scheduled): boolean =>
  x.at < y.at || (x.at === y.at && x.seq < y.seq)

export class Queue<T extends Scheduled> {
  private readonly items: Array<T> = []

  get size(): number {
    return this.items.length
  }

  peek(): T | undefined {
    return this.items[0]
  }

  push(item: T): void {
    const a = this.items
    a.push(item)
    let i = a.length - 1
    while (i > 0) {
      const parent = (i - 1) >> 1
      if (!before(a[i]!, a[parent]!)) break
      ;[a[i], a[parent]] = [a[parent]!, a[i]!]
      i = parent
    }
  }

  pop(): T | undefined {
    const a = this.items
    const top = a[0]
    const last = a.pop()
    if (a.length > 0 && last !== undefined) {
      a[0] = last
      let i = 0
      for (;;) {
        const l = 2 * i + 1
        const r = l + 1
        let m = i
        if (l < a.length && before(a[l]!, a[m]!)) m = l
        if (r < a.length && before(a[r]!, a[m]!)) m = r
        if (m === i) break
        ;[a[i], a[m]] = [a[m]!, a[i]!]
        i = m
      }
    }
    return top
  }
}
