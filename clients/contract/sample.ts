// What a client team writes: the stock socket.io-client typed with the generated event
// maps. `tsc --strict` checks it (tests/integration/clients/test_contract.py), together
// with a file generated from the AsyncAPI document that emits and listens to every event.
import { io, type Socket } from "socket.io-client";
import type {
  ClientToServerEvents,
  ServerToClientEvents,
  SocketMessage,
} from "../../libs/contracts/generated/types";

declare const token: string;

const socket: Socket<ServerToClientEvents, ClientToServerEvents> = io("https://chat.example.org", {
  auth: { token },
  transports: ["websocket"],
});

socket.on("connect_error", (err) => console.error("refused:", err.message));
socket.on("message:new", (m: SocketMessage) => console.log(m.seq, m.senderName, m.content ?? ""));
socket.on("typing:start", (t) => console.log(`${t.userName} is typing…`));
socket.on("message:edited", (e) => console.log(e.messageId, e.content, e.editedAt));

socket.emit(
  "message:send",
  { clientMessageId: crypto.randomUUID(), targetUserId: "bob", type: "TEXT", content: "hi" },
  (ack) => {
    if (ack.status === "ok" && ack.message) console.log("sent as seq", ack.message.seq);
    else if (ack.status === "retry") setTimeout(() => undefined, ack.retryAfter ?? 1000);
    else console.error(ack.code, ack.error);
  },
);
socket.emit("sync", { since: [{ groupId: "g_1", seq: 41, rev: 97 }] }, (ack) => {
  for (const chat of ack.chats ?? []) console.log(chat.groupId, chat.lastSeq, chat.unread);
});
socket.emit("typing:start", { targetUserId: "bob" });

// The contract refuses what the server would refuse:
// @ts-expect-error: `type` must be one of the MessageType values
socket.emit("message:send", { clientMessageId: "x", groupId: "g", type: "GIF" }, () => {});
// @ts-expect-error: message:send takes an acknowledgement callback
socket.emit("message:send", { clientMessageId: "x", groupId: "g", type: "TEXT" }, 42);
// @ts-expect-error: no such server→client event
socket.on("message:exploded", () => {});
// @ts-expect-error: typing:start carries a user name, not a number
socket.on("typing:start", (t: { userName: number }) => t);
