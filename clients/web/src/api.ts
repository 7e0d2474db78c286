// The socket and the contract: the stock socket.io-client typed with the generated maps.
import { io, type Socket } from "socket.io-client";
import type { Ack, ClientToServerEvents, ServerToClientEvents } from "../../../libs/contracts/generated/types";

export type * from "../../../libs/contracts/generated/types";
export type ChatSocket = Socket<ServerToClientEvents, ClientToServerEvents>;

/** Events that take an acknowledgement, and what their ack carries. */
type AckEvents = {
  [E in keyof ClientToServerEvents]: Parameters<ClientToServerEvents[E]> extends [unknown, (ack: infer A) => void] ? A : never;
};
type WithAck = { [E in keyof AckEvents]: AckEvents[E] extends never ? never : E }[keyof AckEvents];

export class AckError extends Error {
  constructor(readonly ack: Ack) {
    super(ack.error ?? ack.code ?? ack.status);
  }
}

/** Ask the server; resolves with the ok ack, retries `retry` acks after `retryAfter`
 * (at most 3 times), rejects with AckError otherwise. */
export async function request<E extends WithAck>(
  socket: ChatSocket,
  event: E,
  payload: Parameters<ClientToServerEvents[E]>[0],
): Promise<AckEvents[E]> {
  for (let attempt = 0; ; attempt++) {
    const emit = socket.timeout(10_000).emitWithAck as unknown as (e: E, p: unknown) => Promise<AckEvents[E] & Ack>;
    const ack = await emit.call(socket.timeout(10_000), event, payload);
    if (ack.status === "ok") return ack;
    if (ack.status === "retry" && attempt < 3) {
      await new Promise((r) => setTimeout(r, ack.retryAfter ?? 1000));
      continue;
    }
    throw new AckError(ack);
  }
}

export function connect(token: string): ChatSocket {
  return io({ auth: { token }, transports: ["websocket", "polling"], reconnectionDelay: 500, reconnectionDelayMax: 5000 });
}
