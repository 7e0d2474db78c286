// Uploads through the media service's HTTP API (POST /v1/uploads, PUT the bytes). The
// page reaches it on its own origin (the dev gateway forwards /v1/ to media), so the
// absolute URLs media hands out are used by their path.
export interface Created {
  uploadId: string;
  uploadUrl: string;
}

export function samePath(url: string): string {
  const u = new URL(url, location.href);
  return u.pathname + u.search;
}

export async function createUpload(token: string, file: File): Promise<Created> {
  const res = await fetch("/v1/uploads", {
    method: "POST",
    headers: { Authorization: `Bearer ${token}`, "Content-Type": "application/json" },
    body: JSON.stringify({ fileName: file.name, size: file.size, mimeType: file.type || undefined }),
  });
  const body = (await res.json().catch(() => ({}))) as Partial<Created> & { error?: string; code?: string };
  if (!res.ok || !body.uploadId || !body.uploadUrl) throw new Error(body.error ?? body.code ?? `upload refused (${res.status})`);
  return body as Created;
}

/** PUT the bytes; `onProgress(0..100)` from the browser's own upload events (the
 * server's upload:progress events drive the same bar). */
export function sendBytes(token: string, created: Created, file: File, onProgress: (pct: number) => void): Promise<{ mediaUrl?: string }> {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open("PUT", samePath(created.uploadUrl));
    xhr.setRequestHeader("Authorization", `Bearer ${token}`);
    xhr.upload.onprogress = (e) => e.lengthComputable && onProgress(Math.floor((e.loaded / e.total) * 100));
    xhr.onload = () => {
      if (xhr.status >= 200 && xhr.status < 300) resolve(JSON.parse(xhr.responseText || "{}") as { mediaUrl?: string });
      else reject(new Error(`upload failed (${xhr.status}) ${xhr.responseText.slice(0, 200)}`));
    };
    xhr.onerror = () => reject(new Error("upload failed: network"));
    xhr.send(file);
  });
}

const blobs = new Map<string, Promise<string>>();

/** An object URL for a media URL (fetched with the bearer token), cached. */
export function mediaBlob(token: string, url: string): Promise<string> {
  let found = blobs.get(url);
  if (!found) {
    found = fetch(samePath(url), { headers: { Authorization: `Bearer ${token}` } }).then(async (res) => {
      if (!res.ok) throw new Error(`media ${res.status}`);
      return URL.createObjectURL(await res.blob());
    });
    blobs.set(url, found);
  }
  return found;
}

export function messageType(file: File): "IMAGE" | "VIDEO" | "AUDIO" | "FILE" {
  if (file.type.startsWith("image/")) return "IMAGE";
  if (file.type.startsWith("video/")) return "VIDEO";
  if (file.type.startsWith("audio/")) return "AUDIO";
  return "FILE";
}
