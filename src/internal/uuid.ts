import { randomUUID } from "node:crypto"

/**
 * A time-ordered (version 7, RFC 9562) UUID for new executions and worker ids:
 * the first 48 bits are the Unix time in milliseconds, the rest random. New
 * rows then land at the right edge of the primary-key indexes instead of on
 * a random page, which keeps the pages an insert or claim touches few and
 * cached (and fewer full-page images in the WAL after a checkpoint).
 */
export const uuid = (): string => {
  const random = randomUUID() // xxxxxxxx-xxxx-4xxx-yxxx-xxxxxxxxxxxx, variant bits already set
  const time = Date.now().toString(16).padStart(12, "0")
  return `${time.slice(0, 8)}-${time.slice(8)}-7${random.slice(15)}`
}
