/**
 * A first-in first-out list whose `shift` is O(1): an array read from a head
 * index, compacted once the consumed part is at least half of it. A worker's
 * buffer holds up to a claim's worth (1600 in W1) and gives one up per
 * started attempt; `Array.prototype.shift` moves the whole rest each time.
 */
export class Fifo<A> {
  private items: Array<A> = []
  private head = 0

  get length(): number {
    return this.items.length - this.head
  }

  push(item: A): void {
    this.items.push(item)
  }

  /** Puts `item` first (it is taken next). */
  unshift(item: A): void {
    if (this.head > 0) this.items[--this.head] = item
    else this.items.unshift(item)
  }

  shift(): A | undefined {
    if (this.head >= this.items.length) return undefined
    const item = this.items[this.head]
    this.items[this.head++] = undefined as A
    if (this.head === this.items.length) {
      this.items.length = 0
      this.head = 0
    } else if (this.head >= 1024 && this.head * 2 >= this.items.length) {
      this.items.splice(0, this.head)
      this.head = 0
    }
    return item
  }

  /** The position of the first item that satisfies `predicate` (0 is the next one out), or -1. */
  findIndex(predicate: (item: A) => boolean): number {
    for (let i = this.head; i < this.items.length; i++) {
      if (predicate(this.items[i]!)) return i - this.head
    }
    return -1
  }

  /** Replaces the item at `index` (as from `findIndex`). */
  set(index: number, item: A): void {
    this.items[this.head + index] = item
  }

  /** Takes out the item at `index` (as from `findIndex`). */
  removeAt(index: number): void {
    this.items.splice(this.head + index, 1)
  }

  /** Takes out every item, in order. */
  takeAll(): Array<A> {
    const all = this.items.slice(this.head)
    this.items = []
    this.head = 0
    return all
  }

  /** The items, in order, mapped. */
  map<B>(f: (item: A) => B): Array<B> {
    const out: Array<B> = []
    for (let i = this.head; i < this.items.length; i++) out.push(f(this.items[i]!))
    return out
  }
}
