import { randomUUID } from "node:crypto"

/** A random (v4) UUID for new executions and worker ids. */
export const uuid = (): string => randomUUID()
