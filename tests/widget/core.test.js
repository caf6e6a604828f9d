// Node tests of the widget's pure core; tests/conversations/test_widget_core.py runs them.
"use strict";

const test = require("node:test");
const assert = require("node:assert/strict");
const path = require("node:path");

const core = require(path.join(__dirname, "..", "..", "conversations", "widget", "vizochok-widget.js"));

const BASE = "https://chat.example.com";
const VALID = { apiKey: "pk_live_abc", storeId: "store-1" };

function configError(fn, property) {
  assert.throws(fn, (error) => {
    assert.ok(error instanceof TypeError, "expected a TypeError");
    assert.match(error.message, new RegExp("config\\." + property.replace(".", "\\.") + ":"));
    return true;
  });
}

test("config defaults", () => {
  const config = core.validateConfig(VALID, BASE);
  assert.deepEqual(config, {
    apiKey: "pk_live_abc",
    storeId: "store-1",
    userId: null,
    userToken: null,
    language: "uk",
    conversationLanguage: null,
    apiBase: BASE,
    position: "bottom-right",
    botName: "Помічник",
    botAvatar: null,
    placeholder: null,
    welcomeMessage: null,
    theme: {},
    callbacks: {},
  });
});

test("config default bot name follows language", () => {
  const names = {};
  for (const language of ["uk", "en", "ru"]) {
    names[language] = core.validateConfig({ ...VALID, language }, BASE).botName;
  }
  assert.deepEqual(names, { uk: "Помічник", en: "Assistant", ru: "Ассистент" });
});

test("config keeps given values", () => {
  const onCartChanged = () => {};
  const config = core.validateConfig(
    {
      ...VALID,
      userId: "user-1",
      userToken: "1700000000." + "a".repeat(64),
      language: "en",
      apiBase: "http://127.0.0.1:8000/",
      position: "bottom-left",
      botName: "Bot",
      botAvatar: "https://cdn.example.com/a.png",
      placeholder: "Ask",
      welcomeMessage: "Hi",
      theme: { primaryColor: "#f00", borderRadius: 4 },
      onCartChanged,
    },
    BASE
  );
  assert.equal(config.apiBase, "http://127.0.0.1:8000");
  assert.equal(config.userId, "user-1");
  assert.equal(config.language, "en");
  assert.equal(config.conversationLanguage, "en");
  assert.equal(config.position, "bottom-left");
  assert.deepEqual(config.theme, { primaryColor: "#f00", borderRadius: "4px" });
  assert.equal(config.callbacks.onCartChanged, onCartChanged);
});

test("config rejects missing and invalid properties", () => {
  configError(() => core.validateConfig({ storeId: "s" }, BASE), "apiKey");
  configError(() => core.validateConfig({ apiKey: "pk_x" }, BASE), "storeId");
  configError(() => core.validateConfig({ apiKey: "sk_live_x", storeId: "s" }, BASE), "apiKey");
  configError(() => core.validateConfig({ apiKey: "", storeId: "s" }, BASE), "apiKey");
  configError(() => core.validateConfig({ ...VALID, storeId: " s" }, BASE), "storeId");
  configError(() => core.validateConfig({ ...VALID, storeId: "s".repeat(101) }, BASE), "storeId");
  configError(() => core.validateConfig({ ...VALID, storeId: 123 }, BASE), "storeId");
  configError(() => core.validateConfig({ ...VALID, userId: "u" }, BASE), "userToken");
  configError(() => core.validateConfig({ ...VALID, userToken: "t" }, BASE), "userId");
  configError(() => core.validateConfig({ ...VALID, language: "de" }, BASE), "language");
  configError(() => core.validateConfig({ ...VALID, position: "top-left" }, BASE), "position");
  configError(() => core.validateConfig({ ...VALID, apiBase: "javascript:alert(1)" }, BASE), "apiBase");
  configError(() => core.validateConfig(VALID, null), "apiBase");
  configError(() => core.validateConfig({ ...VALID, botAvatar: "data:image/png;base64,AA" }, BASE), "botAvatar");
  configError(() => core.validateConfig({ ...VALID, theme: { color: "red" } }, BASE), "theme.color");
  configError(() => core.validateConfig({ ...VALID, theme: { fontFamily: {} } }, BASE), "theme.fontFamily");
  configError(() => core.validateConfig({ ...VALID, onError: "handler" }, BASE), "onError");
  assert.throws(() => core.validateConfig(undefined, BASE), TypeError);
});

function parseAll(chunks) {
  const parser = new core.SSEParser();
  const messages = [];
  for (const chunk of chunks) {
    messages.push(...parser.push(chunk));
  }
  messages.push(...parser.end());
  return messages;
}

test("sse parses a stream split at every character", () => {
  const body =
    ': stream opened\n\nevent: text_delta\ndata: {"type":"text_delta","delta":"Мол"}\n\n' +
    'event: response_complete\ndata: {"type":"response_complete"}\n\n';
  const expected = [
    { event: "text_delta", data: '{"type":"text_delta","delta":"Мол"}', id: "" },
    { event: "response_complete", data: '{"type":"response_complete"}', id: "" },
  ];
  assert.deepEqual(parseAll([body]), expected);
  assert.deepEqual(parseAll(Array.from(body)), expected);
});

test("sse handles CRLF and CR split between chunks", () => {
  const expected = [{ event: "status", data: "a", id: "" }, { event: "message", data: "b", id: "" }];
  assert.deepEqual(parseAll(["event: status\r\ndata: a\r\n\r\ndata: b\r\n\r\n"]), expected);
  assert.deepEqual(parseAll(["event: status\r", "\ndata: a\r", "\n\r", "\ndata: b\r\r"]), expected);
  assert.deepEqual(parseAll(["event: status\rdata: a\r\rdata: b\r", "\r"]), expected);
});

test("sse joins data lines and skips comments", () => {
  const messages = parseAll([": comment\ndata: one\n: inside\ndata:two\ndata\nid: 7\n\n"]);
  assert.deepEqual(messages, [{ event: "message", data: "one\ntwo\n", id: "7" }]);
});

test("sse drops a message cut off at the end", () => {
  assert.deepEqual(parseAll(["data: complete\n\ndata: cut"]), [
    { event: "message", data: "complete", id: "" },
  ]);
  assert.deepEqual(parseAll(["event: only\n\n"]), []);
});

const CARD = {
  sku: "milk-002",
  name: "Молоко Галичина 3.2%",
  brand: "Галичина",
  price: 52.0,
  promo_price: 42.0,
  promo_label: "-19%",
  unit: "pcs",
  image_url: null,
  category_path: null,
};
const CART_EVENT = {
  type: "cart_changed",
  action: "item_selected",
  sku: "milk-002",
  name: "Молоко Галичина 3.2%",
  quantity: 2,
  price: 52.0,
  items: [
    { sku: "milk-002", name: "Молоко Галичина 3.2%", price: 52.0, promo_price: 42.0, brand: "Галичина", quantity: 2, unit: "pcs" },
  ],
  total: 84.0,
};

test("reducer builds a reply from events", () => {
  let state = core.addShopperMessage(core.initialState(), "молоко");
  assert.equal(state.busy, true);
  const events = [
    { type: "status", code: "searching" },
    { type: "text_delta", delta: "Ось " },
    { type: "text_delta", delta: "що є" },
    { type: "text_end" },
    { type: "text_delta", delta: "Ще" },
    { type: "text_end" },
    { type: "product_cards", items: [CARD] },
    CART_EVENT,
    { type: "error", code: "internal_error", error_id: "e1" },
    { type: "event", event: "item_selected" },
  ];
  const seen = [];
  for (const event of events) {
    state = core.reduceEvent(state, event);
    seen.push(state.entries[1].status);
  }
  assert.deepEqual(seen, ["searching", null, null, null, null, null, null, null, null, null]);
  assert.equal(state.busy, true);
  assert.deepEqual(state.entries[1].parts, [
    { kind: "text", text: "Ось що є" },
    { kind: "text", text: "Ще" },
    { kind: "cards", items: [CARD] },
    { kind: "cart", event: CART_EVENT },
    { kind: "error", error: { type: "error", code: "internal_error", error_id: "e1" } },
  ]);
  assert.deepEqual(state.cart, { items: CART_EVENT.items, total: 84.0 });

  const done = core.reduceEvent(state, { type: "response_complete" });
  assert.equal(done.busy, false);
  assert.equal(done.entries[1].complete, true);
  assert.equal(state.entries[1].complete, false, "the reducer must not change its input");

  const next = core.reduceEvent(core.addShopperMessage(done, "ще"), { type: "text_delta", delta: "x" });
  assert.equal(next.entries.length, 4);
  assert.deepEqual(next.entries[3].parts, [{ kind: "text", text: "x" }]);
});

test("cart changed event drops the type", () => {
  const { type, ...rest } = CART_EVENT;
  assert.equal(type, "cart_changed");
  assert.deepEqual(core.cartChangedEvent(CART_EVENT), rest);
});

test("restore rebuilds transcript, cart and assistant", () => {
  const state = core.restoreState({
    cart: { items: CART_EVENT.items, total: 84.0 },
    messages: [
      { role: "user", text: "молоко", events: [], metadata: { language: "uk" } },
      {
        role: "assistant",
        text: "Ось",
        events: [{ type: "text_delta", delta: "Ось" }, { type: "text_end" }, { type: "response_complete" }],
        metadata: { assistant: "offline", intent: "search" },
      },
      { role: "user", text: "додай", events: [], metadata: {} },
      {
        role: "assistant",
        text: "",
        events: [{ type: "error", code: "internal_error", reason: "interrupted" }],
        metadata: { assistant: null, interrupted: "interrupted" },
      },
    ],
  });
  assert.equal(state.busy, false);
  assert.equal(state.assistant, "offline");
  assert.deepEqual(state.cart, { items: CART_EVENT.items, total: 84.0 });
  assert.deepEqual(state.entries.map((entry) => entry.role), ["user", "assistant", "user", "assistant"]);
  assert.deepEqual(state.entries[1].parts, [{ kind: "text", text: "Ось" }]);
  assert.equal(state.entries[3].complete, true);
  assert.equal(core.restoreState({ assistant: "agent", messages: [] }).assistant, "agent");
  assert.equal(core.assistantOf({ messages: [] }), null);
  assert.equal(core.assistantOf({ messages: [{ role: "assistant", metadata: { assistant: "agent" } }] }), "agent");
});

test("prices use two decimals per language", () => {
  assert.equal(core.formatPrice(45.9, "uk"), "45,90");
  assert.equal(core.formatPrice(45.9, "en"), "45.90");
  assert.equal(core.formatPrice(45.9, "ru"), "45,90");
  assert.equal(core.formatPrice(1.005, "en"), "1.01");
  assert.equal(core.formatPrice(0.125, "uk"), "0,13");
  assert.equal(core.formatPrice(1234567.5, "uk"), "1\u00a0234\u00a0567,50");
  assert.equal(core.formatPrice(1234567.5, "en"), "1,234,567.50");
  assert.equal(core.formatPrice(0, "en"), "0.00");
  assert.equal(core.formatPrice(null, "en"), "");
  assert.equal(core.formatPrice(NaN, "en"), "");
  assert.equal(core.formatUnitPrice(14.95, "kg", "uk"), "14,95 / кг");
  assert.equal(core.formatUnitPrice(14.95, "l", "en"), "14.95 / l");
  assert.equal(core.formatUnitPrice(14.95, "pcs", "en"), "14.95");
  assert.equal(core.formatUnitPrice(14.95, "box", "ru"), "14,95 / box");
});

test("storage keys differ per api base, key, store and user", () => {
  const base = { apiBase: BASE, apiKey: "pk_a", storeId: "s1", userId: null };
  const key = core.storageKey(base);
  assert.equal(key, 'vizochok.conversation.v1:["https://chat.example.com","pk_a","s1",null]');
  const variants = [
    { ...base, apiBase: "https://other.example.com" },
    { ...base, apiKey: "pk_b" },
    { ...base, storeId: "s2" },
    { ...base, userId: "u1" },
  ];
  const keys = new Set([key, ...variants.map(core.storageKey)]);
  assert.equal(keys.size, 5);
  // A separator inside a value cannot make two configurations share a key.
  assert.notEqual(
    core.storageKey({ ...base, storeId: "a\",\"b" }),
    core.storageKey({ ...base, apiKey: "pk_a\",\"a", storeId: "b" })
  );
});

test("errors are localized with a fallback", () => {
  assert.equal(
    core.localizeError({ code: "rate_limit_exceeded", retry_after: 12 }, "en"),
    "Too many messages in a row. Try again in 12 s."
  );
  assert.equal(core.localizeError({ code: "agent_busy" }, "uk"), core.ERROR_TEXTS.uk.agent_busy);
  assert.equal(core.localizeError({ code: "new_code" }, "ru"), core.ERROR_TEXTS.ru.unknown);
  assert.equal(core.localizeError({ code: "toString" }, "en"), core.ERROR_TEXTS.en.unknown);
  for (const language of core.LANGUAGES) {
    assert.deepEqual(Object.keys(core.ERROR_TEXTS[language]), Object.keys(core.ERROR_TEXTS.uk));
    assert.deepEqual(Object.keys(core.TEXTS[language]), Object.keys(core.TEXTS.uk));
  }
});

test("add message names the product", () => {
  assert.equal(core.addMessageText(CARD, "uk"), "Додай «Молоко Галичина 3.2%»");
  assert.equal(core.addMessageText(CARD, "en"), "Add «Молоко Галичина 3.2%»");
  assert.equal(core.addMessageText(CARD, "ru"), "Добавь «Молоко Галичина 3.2%»");
});

test("add message quotes names containing quotes", () => {
  const message = (name) => core.addMessageText({ name }, "en");
  assert.equal(message("Молоко «Ферма» 1 л"), "Add “Молоко «Ферма» 1 л”");
  assert.equal(message("Сир “Хуторок” 1 кг"), "Add «Сир “Хуторок” 1 кг»");
  assert.equal(message("Вода «Моршинська» “Лимон” 1 л"), 'Add "Вода «Моршинська» “Лимон” 1 л"');
  assert.equal(message('Кава «A» “B” "C" 1 кг'), 'Add «Кава «A» “B” "C" 1 кг»');
});

test("add message keeps dollar patterns in names", () => {
  assert.equal(core.addMessageText({ name: "Cola $& $' $1" }, "en"), "Add «Cola $& $' $1»");
});

test("reply announcement joins text and errors", () => {
  const entry = {
    parts: [
      { kind: "text", text: "Found milk." },
      { kind: "cards", items: [CARD] },
      { kind: "text", text: "  " },
      { kind: "error", error: { code: "stream_interrupted" } },
    ],
  };
  assert.equal(
    core.replyAnnouncement(entry, "en"),
    "Found milk.\nThe reply was cut off. Please try again."
  );
  assert.equal(core.replyAnnouncement({ parts: [] }, "en"), "");
});

test("reply announcement ends with cart summary", () => {
  const later = Object.assign({}, CART_EVENT, { items: [], total: 0 });
  const entry = {
    parts: [
      { kind: "cart", event: CART_EVENT },
      { kind: "text", text: "Done." },
      { kind: "cart", event: later },
    ],
  };
  // The summary is the cart after the reply's last change, once.
  assert.equal(core.replyAnnouncement(entry, "en"), "Done.\nCart (0): Total 0.00");
  assert.equal(
    core.replyAnnouncement({ parts: [{ kind: "cart", event: CART_EVENT }] }, "uk"),
    "Кошик (1): Разом 84,00"
  );
});

test("cart summary counts items per language", () => {
  assert.equal(core.cartSummary(CART_EVENT, "en"), "Cart (1): Total 84.00");
  assert.equal(core.cartSummary(CART_EVENT, "ru"), "Корзина (1): Итого 84,00");
  assert.equal(core.cartSummary({ items: null, total: 1234.5 }, "uk"), "Кошик (0): Разом 1\u00a0234,50");
});

test("only http and https urls are accepted", () => {
  assert.equal(core.isHttpUrl("https://cdn.example.com/a.png"), true);
  assert.equal(core.isHttpUrl("http://cdn.example.com/a.png"), true);
  assert.equal(core.isHttpUrl("javascript:alert(1)"), false);
  assert.equal(core.isHttpUrl("data:image/png;base64,AA"), false);
  assert.equal(core.isHttpUrl("/relative.png"), false);
  assert.equal(core.isHttpUrl(null), false);
});

test("theme numbers become pixels for lengths only", () => {
  const config = core.validateConfig(
    { ...VALID, theme: { fontSize: 16, borderRadius: 0, zIndex: 10, fontFamily: "serif" } },
    BASE
  );
  assert.deepEqual(config.theme, {
    fontSize: "16px",
    borderRadius: "0px",
    zIndex: "10",
    fontFamily: "serif",
  });
  assert.deepEqual(core.validateConfig({ ...VALID, theme: { fontSize: "1rem" } }, BASE).theme, {
    fontSize: "1rem",
  });
  configError(() => core.validateConfig({ ...VALID, theme: { zIndex: NaN } }, BASE), "theme.zIndex");
  configError(() => core.validateConfig({ ...VALID, theme: { fontSize: Infinity } }, BASE), "theme.fontSize");
});

test("api base keeps a path and rejects query, fragment and user info", () => {
  const apiBase = (value) => core.validateConfig({ ...VALID, apiBase: value }, BASE).apiBase;
  assert.equal(apiBase("https://chat.example.com/vizochok//"), "https://chat.example.com/vizochok");
  assert.equal(apiBase("HTTPS://Chat.Example.com:443/"), "https://chat.example.com");
  assert.equal(apiBase("http://127.0.0.1:8000"), "http://127.0.0.1:8000");
  for (const value of [
    "https://chat.example.com/?tenant=1",
    "https://chat.example.com/?",
    "https://chat.example.com#top",
    "https://user:secret@chat.example.com",
    "https://user@chat.example.com",
    "data:text/html,hi",
    "//chat.example.com",
  ]) {
    configError(() => core.validateConfig({ ...VALID, apiBase: value }, BASE), "apiBase");
  }
});

test("sse parses a long line in many chunks quickly", () => {
  const parser = new core.SSEParser();
  const chunk = "x".repeat(1024);
  const started = Date.now();
  assert.deepEqual(parser.push("data: "), []);
  for (let index = 0; index < 4096; index++) {
    assert.deepEqual(parser.push(chunk), []);
  }
  const messages = parser.push("\r");
  messages.push(...parser.push("\n\n"));
  assert.equal(messages.length, 1);
  assert.equal(messages[0].data.length, 4096 * 1024);
  // A rescan of the whole line per chunk took about 10 s for 3 MB on a 2-core machine.
  assert.ok(Date.now() - started < 2000, `took ${Date.now() - started} ms`);
  assert.deepEqual(parser.end(), []);
});

test("reducer ignores malformed server fields", () => {
  let state = core.addShopperMessage(core.initialState(), "x");
  state = core.reduceEvent(state, { type: "text_delta" });
  state = core.reduceEvent(state, { type: "text_delta", delta: { html: "<b>" } });
  state = core.reduceEvent(state, { type: "product_cards", items: "<img src=x>" });
  state = core.reduceEvent(state, { type: "product_cards", items: [null, 5, "s", [CARD], CARD] });
  state = core.reduceEvent(state, { type: "cart_changed", items: { 0: CARD }, total: 3 });
  state = core.reduceEvent(state, { type: "unknown_type", items: 7 });
  assert.deepEqual(state.entries[1].parts, [
    { kind: "text", text: "" },
    { kind: "cards", items: [] },
    { kind: "cards", items: [CARD] },
    { kind: "cart", event: { type: "cart_changed", items: { 0: CARD }, total: 3 } },
  ]);
  assert.deepEqual(state.cart, { items: [], total: 3 });
  assert.equal(state.busy, true);

  const restored = core.restoreState({
    cart: { items: "none", total: 0 },
    messages: [null, { role: "assistant", events: "x", metadata: null }],
  });
  assert.deepEqual(restored.cart, { items: [], total: 0 });
  assert.deepEqual(restored.entries.map((entry) => entry.complete), [true]);
  assert.equal(restored.assistant, null);
});

test("origin not allowed gets its own text", () => {
  const error = { code: "permission_denied", reason: "origin_not_allowed" };
  assert.equal(core.localizeError(error, "en"), "The chat is not enabled for this site. Try again later.");
  assert.equal(core.localizeError(error, "uk"), core.ERROR_TEXTS.uk.origin_not_allowed);
  assert.equal(
    core.localizeError({ code: "permission_denied", reason: "user_token_expired" }, "en"),
    core.ERROR_TEXTS.en.permission_denied
  );
});

function fakeFetch(body, contentType) {
  const requests = [];
  const fetch = async (url, init) => {
    requests.push({ url, init });
    return new Response(body, { status: 200, headers: { "Content-Type": contentType } });
  };
  return { fetch, requests };
}

async function sendWith(body, contentType) {
  const config = core.validateConfig({ ...VALID, apiBase: "https://chat.example.com/vz/" }, BASE);
  const { fetch, requests } = fakeFetch(body, contentType);
  const seen = [];
  const reply = await new core.ChatClient(config, { fetch }).sendMessage("conv_1", "hi", {
    stream: true,
    onEvent: (event) => seen.push(event),
  });
  return { reply, seen, requests };
}

const INTERRUPTED = [{ type: "error", code: "stream_interrupted" }, { type: "response_complete" }];

test("json reply without completion is finished", async () => {
  const html = await sendWith("<html>store page</html>", "text/html");
  assert.deepEqual(html.seen, INTERRUPTED);
  assert.deepEqual(html.reply, { messageId: null, events: INTERRUPTED });
  assert.equal(html.requests[0].url, "https://chat.example.com/vz/api/v1/conversations/conv_1/messages");

  const partial = await sendWith(
    JSON.stringify({ message_id: "msg_1", events: [{ type: "text_delta", delta: "a" }, "junk", null] }),
    "application/json"
  );
  assert.deepEqual(partial.seen, [{ type: "text_delta", delta: "a" }, ...INTERRUPTED]);
  assert.equal(partial.reply.messageId, "msg_1");

  const complete = await sendWith(
    JSON.stringify({ events: [{ type: "response_complete" }, { type: "text_delta", delta: "late" }] }),
    "application/json"
  );
  assert.deepEqual(complete.seen, [{ type: "response_complete" }]);
});

test("stream without completion is finished once", async () => {
  const cut = await sendWith(
    'data: {"type":"text_delta","delta":"a"}\n\ndata: not json\n\ndata: 5\n\ndata: {"type":"text_end"}',
    "text/event-stream"
  );
  assert.deepEqual(cut.seen, [{ type: "text_delta", delta: "a" }, ...INTERRUPTED]);

  const done = await sendWith(
    'data: {"type":"response_complete"}\n\ndata: {"type":"error","code":"x"}\n\n',
    "text/event-stream"
  );
  assert.deepEqual(done.seen, [{ type: "response_complete" }]);
});

test("stalled stream times out", async () => {
  const config = core.validateConfig(VALID, BASE);
  const encoder = new TextEncoder();
  const fetch = async () =>
    new Response(
      new ReadableStream({
        start(controller) {
          controller.enqueue(encoder.encode('data: {"type":"status","code":"searching"}\n\n'));
        },
      }),
      { status: 200, headers: { "Content-Type": "text/event-stream" } }
    );
  const seen = [];
  const reply = await new core.ChatClient(config, { fetch, replyTimeoutMs: 50 }).sendMessage(
    "conv_1",
    "hi",
    { onEvent: (event) => seen.push(event) }
  );
  assert.deepEqual(seen, [{ type: "status", code: "searching" }, ...INTERRUPTED]);
  assert.deepEqual(reply.events, seen);
});

test("request without response times out", async () => {
  const config = core.validateConfig(VALID, BASE);
  const fetch = (url, init) =>
    new Promise((resolve, reject) => {
      init.signal.addEventListener("abort", () => reject(new DOMException("aborted", "AbortError")));
    });
  await assert.rejects(
    new core.ChatClient(config, { fetch, replyTimeoutMs: 50 }).sendMessage("conv_1", "hi", {}),
    (error) => {
      assert.ok(error instanceof core.ApiError);
      assert.equal(error.code, "network_error");
      assert.equal(error.status, 0);
      return true;
    }
  );
});

test("message sends its idempotency key", async () => {
  const config = core.validateConfig(VALID, BASE);
  const { fetch, requests } = fakeFetch('{"events": []}', "application/json");

  await new core.ChatClient(config, { fetch }).sendMessage("conv_1", "hi", {
    idempotencyKey: "key-1",
  });
  await new core.ChatClient(config, { fetch }).sendMessage("conv_1", "hi", {});

  assert.equal(requests[0].init.headers["Idempotency-Key"], "key-1");
  assert.equal("Idempotency-Key" in requests[1].init.headers, false);
  assert.equal(requests[1].init.headers.Authorization, "Bearer pk_live_abc");
});

test("idempotency keys are random", () => {
  const keys = new Set([core.newIdempotencyKey(), core.newIdempotencyKey()]);
  assert.equal(keys.size, 2);
  keys.forEach((key) => assert.match(key, /^[0-9a-f-]{36}$/));
});

test("idempotency key without randomUUID", (context) => {
  const crypto = globalThis.crypto;
  context.after(() => Object.defineProperty(globalThis, "crypto", { value: crypto, configurable: true }));

  Object.defineProperty(globalThis, "crypto", {
    value: { getRandomValues: (bytes) => crypto.getRandomValues(bytes) },
    configurable: true,
  });
  const fromRandomValues = core.newIdempotencyKey();
  Object.defineProperty(globalThis, "crypto", { value: undefined, configurable: true });
  const fromMathRandom = core.newIdempotencyKey();

  assert.match(fromRandomValues, /^[0-9a-f]{32}$/);
  assert.match(fromMathRandom, /^[0-9a-z]+(-[0-9a-z]+){4}$/);
  assert.ok(fromMathRandom.length <= 255);
});
