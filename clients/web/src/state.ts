// Client-side state: chats, messages by chat, people. Everything the server sends is
// merged here; the view renders from it.
import type { ChatState, Group, SocketMessage } from "./api";

export type ChatKey = string; // "c:<conversationId>" | "g:<groupId>"

export interface Chat {
  key: ChatKey;
  conversationId?: string;
  groupId?: string;
  /** The DM peer, when known. */
  peerId?: string;
  title: string;
  group?: Group;
  lastSeq: number;
  lastRev: number;
  unread: number;
  mutedUntil?: string | null;
  muted: boolean;
  /** Highest seq the other side has read (DMs: read ticks). */
  peerReadSeq: number;
  /** Highest seq this user has marked read from this device. */
  myReadSeq: number;
  /** Members online (groups, from presence:state). */
  online?: number;
  messages: Map<string, SocketMessage>;
  hasMore: boolean;
  typing: Map<string, { name: string; until: number }>;
  members: Map<string, string>; // userId -> role (learned from events)
}

export interface Person {
  status?: string;
  lastSeenAt?: string;
  customStatus?: string;
  emoji?: string;
}

export const keyOf = (t: { conversationId?: string | null; groupId?: string | null }): ChatKey =>
  t.groupId ? `g:${t.groupId}` : `c:${t.conversationId}`;

export class State {
  chats = new Map<ChatKey, Chat>();
  people = new Map<string, Person>();
  blocked = new Set<string>();
  blockedBy = new Set<string>();
  current: ChatKey | null = null;
  connection: "connecting" | "online" | "offline" = "connecting";

  constructor(readonly me: { id: string; name: string }) {
    const peers = JSON.parse(localStorage.getItem(this.storeKey("peers")) ?? "{}") as Record<string, string>;
    this.knownPeers = new Map(Object.entries(peers));
    const names = JSON.parse(localStorage.getItem(this.storeKey("names")) ?? "{}") as Record<string, string>;
    this.names = new Map(Object.entries(names));
  }

  knownPeers: Map<string, string>;
  /** Display names seen in messages, kept across reloads (the protocol has no profile query). */
  names: Map<string, string>;

  storeKey(what: string): string {
    return `chat:${this.me.id}:${what}`;
  }

  chat(target: { conversationId?: string | null; groupId?: string | null }): Chat {
    const key = keyOf(target);
    let chat = this.chats.get(key);
    if (!chat) {
      chat = {
        key,
        conversationId: target.conversationId ?? undefined,
        groupId: target.groupId ?? undefined,
        title: target.groupId ? "Group" : "Conversation",
        lastSeq: 0,
        lastRev: 0,
        unread: 0,
        muted: false,
        peerReadSeq: 0,
        myReadSeq: 0,
        messages: new Map(),
        hasMore: true,
        typing: new Map(),
        members: new Map(),
      };
      if (chat.conversationId) chat.peerId = this.knownPeers.get(chat.conversationId);
      if (chat.peerId) chat.title = this.names.get(chat.peerId) ?? chat.peerId;
      this.chats.set(key, chat);
    }
    return chat;
  }

  learnPeer(chat: Chat, peerId: string, name?: string): void {
    if (!chat.conversationId || peerId === this.me.id) return;
    chat.peerId = peerId;
    if (chat.title === "Conversation" || chat.title === peerId) chat.title = name ?? this.names.get(peerId) ?? peerId;
    if (name && this.names.get(peerId) !== name) {
      this.names.set(peerId, name);
      localStorage.setItem(this.storeKey("names"), JSON.stringify(Object.fromEntries(this.names)));
    }
    if (!this.knownPeers.has(chat.conversationId)) {
      this.knownPeers.set(chat.conversationId, peerId);
      localStorage.setItem(this.storeKey("peers"), JSON.stringify(Object.fromEntries(this.knownPeers)));
    }
  }

  /** Merge a message (new, changed, or a tombstone): replaces the copy by id. */
  upsert(m: SocketMessage, live = false): Chat {
    const chat = this.chat(m);
    const had = chat.messages.has(m.id);
    chat.messages.set(m.id, m);
    if (m.senderId !== this.me.id) this.learnPeer(chat, m.senderId, m.senderName);
    if (m.seq > chat.lastSeq) {
      chat.lastSeq = m.seq;
      if (live && !had && m.senderId !== this.me.id && this.current !== chat.key) chat.unread += 1;
    }
    chat.lastRev = Math.max(chat.lastRev, m.rev);
    this.saveCursor(chat);
    return chat;
  }

  applySync(row: ChatState): Chat {
    const chat = this.chat(row);
    chat.unread = row.unread;
    chat.mutedUntil = row.mutedUntil;
    chat.muted = row.mutedUntil !== undefined && (row.mutedUntil === null || new Date(row.mutedUntil) > new Date());
    return chat;
  }

  ordered(chat: Chat): SocketMessage[] {
    return [...chat.messages.values()].sort((a, b) => a.seq - b.seq);
  }

  /** The `sync` cursors this device remembers (seq and rev of what it holds). */
  cursors(): { conversationId?: string; groupId?: string; seq: number; rev: number }[] {
    const saved = JSON.parse(localStorage.getItem(this.storeKey("cursors")) ?? "{}") as Record<string, [number, number]>;
    for (const chat of this.chats.values()) saved[chat.key] = [chat.lastSeq, chat.lastRev];
    return Object.entries(saved)
      .filter(([, [seq]]) => seq > 0)
      .map(([key, [seq, rev]]) => (key.startsWith("g:") ? { groupId: key.slice(2), seq, rev } : { conversationId: key.slice(2), seq, rev }));
  }

  saveCursor(chat: Chat): void {
    const saved = JSON.parse(localStorage.getItem(this.storeKey("cursors")) ?? "{}") as Record<string, [number, number]>;
    saved[chat.key] = [chat.lastSeq, chat.lastRev];
    localStorage.setItem(this.storeKey("cursors"), JSON.stringify(saved));
  }
}
