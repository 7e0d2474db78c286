// A tiny element builder: enough for an accessible UI without a framework.
type Attrs = Record<string, string | number | boolean | null | undefined | EventListener>;
type Child = Node | string | null | undefined | false;

export function h(tag: string, attrs: Attrs = {}, ...children: (Child | Child[])[]): HTMLElement {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (key.startsWith("on") && typeof value === "function") el.addEventListener(key.slice(2), value);
    else if (key === "value" && "value" in el) (el as HTMLInputElement).value = String(value);
    else el.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child);
  }
  return el;
}

/** "5 minutes ago" */
export function ago(iso: string, now = Date.now()): string {
  const s = Math.max(0, Math.round((now - new Date(iso).getTime()) / 1000));
  if (s < 45) return "just now";
  const m = Math.round(s / 60);
  if (m < 60) return `${m} minute${m === 1 ? "" : "s"} ago`;
  const hours = Math.round(m / 60);
  if (hours < 24) return `${hours} hour${hours === 1 ? "" : "s"} ago`;
  const d = Math.round(hours / 24);
  return `${d} day${d === 1 ? "" : "s"} ago`;
}

export function time(iso: string): string {
  return new Date(iso).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
}

/**
 * Where keyboard focus is, in terms that survive a re-render: the nearest element that
 * has an `id`, a `data-id` (a message) or a `data-chat` (a chat in the list), and the
 * focused element's place among that element's focusable descendants (-1: the element
 * itself). Every render replaces the pane's nodes, and a focused node that leaves the
 * document drops focus to <body>: without this, a presence or typing event arriving
 * while a keyboard user sits on a message's "Reply" would throw them back to the top.
 */
export interface FocusSpot {
  anchor: string;
  index: number;
}

const FOCUSABLE = "button, input, select, textarea, a[href], [tabindex]";

function anchorOf(el: Element): string | null {
  if (el.id) return `#${CSS.escape(el.id)}`;
  for (const attr of ["data-id", "data-chat"]) {
    const value = el.getAttribute(attr);
    if (value) return `[${attr}="${CSS.escape(value)}"]`;
  }
  return null;
}

export function focusSpot(): FocusSpot | null {
  const active = document.activeElement;
  if (!active || active === document.body) return null;
  for (let el: Element | null = active; el; el = el.parentElement) {
    const anchor = anchorOf(el);
    if (anchor) return { anchor, index: el === active ? -1 : [...el.querySelectorAll(FOCUSABLE)].indexOf(active) };
  }
  return null;
}

/** Puts focus back where `focusSpot` found it, unless something else holds it now. */
export function restoreFocus(spot: FocusSpot | null): void {
  if (!spot) return;
  const active = document.activeElement;
  if (active && active !== document.body) return;
  const anchor = document.querySelector<HTMLElement>(spot.anchor);
  if (!anchor) return;
  // The anchor first: a message's toolbar is shown only while the message holds focus
  // (CSS :focus-within), and a button that is not displayed cannot take focus.
  anchor.focus({ preventScroll: true });
  if (spot.index >= 0) anchor.querySelectorAll<HTMLElement>(FOCUSABLE)[spot.index]?.focus({ preventScroll: true });
}
