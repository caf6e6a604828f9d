// Node tests of the widget's DOM layer on the minimal DOM of fake_dom.js, with a fake fetch
// that returns chat API responses. tests/conversations/test_widget_core.py runs them.
"use strict";

const test = require("node:test");
const assert = require("node:assert/strict");

const fs = require("node:fs");
const path = require("node:path");

const { loadWidget } = require("./fake_dom.js");

const WIDGET_SCRIPT = path.join(__dirname, "..", "..", "conversations", "widget", "vizochok-widget.js");

/** Return the channels of a #rrggbb colour as numbers 0-255. */
function channels(hex) {
  return [1, 3, 5].map((index) => parseInt(hex.slice(index, index + 2), 16));
}

/** Return the WCAG 2.1 contrast ratio of two #rrggbb colours. */
function contrast(first, second) {
  const luminance = (hex) => {
    const [red, green, blue] = channels(hex).map((value) => {
      const ratio = value / 255;
      return ratio <= 0.03928 ? ratio / 12.92 : ((ratio + 0.055) / 1.055) ** 2.4;
    });
    return 0.2126 * red + 0.7152 * green + 0.0722 * blue;
  };
  const [light, dark] = [luminance(first), luminance(second)].sort((a, b) => b - a);
  return (light + 0.05) / (dark + 0.05);
}

/** Return `foreground` drawn with `opacity` over `background`, as #rrggbb. */
function blend(foreground, background, opacity) {
  const front = channels(foreground);
  const back = channels(background);
  return "#" + front.map((value, index) => {
    const mixed = Math.round(opacity * value + (1 - opacity) * back[index]);
    return mixed.toString(16).padStart(2, "0");
  }).join("");
}

const CARD = {
  sku: "h-1",
  name: "חלב Молоко «Ферма» 1 л",
  brand: "Ферма",
  price: 45.9,
  unit: "pcs",
  image_url: "http://127.0.0.1:9/missing.png",
};

function response(status, body) {
  return {
    ok: status >= 200 && status < 300,
    status,
    headers: { get: (name) => (name === "Content-Type" ? "application/json" : null) },
    text: async () => JSON.stringify(body),
  };
}

/** Return a fetch that returns chat API responses and records each request's body. */
function chatFetch(requests, replyEvents) {
  return async (url, init) => {
    requests.push({ url, body: init.body ? JSON.parse(init.body) : null });
    if (url.endsWith("/api/v1/conversations")) {
      return response(201, { conversation_id: "conv_1", assistant: "offline" });
    }
    return response(200, { message_id: "msg_1", events: replyEvents });
  };
}

const REPLY = [
  { type: "text_delta", delta: "Here is milk." },
  { type: "text_end" },
  { type: "product_cards", items: [CARD] },
  { type: "response_complete" },
];

// A reply that only puts one milk in the cart.
const CART_REPLY = [
  {
    type: "cart_changed",
    action: "item_selected",
    items: [{ sku: "m-1", name: "Milk", price: 40, promo_price: null, quantity: 1, unit: "pcs" }],
    total: 40,
  },
  { type: "response_complete" },
];

/** Mount an open widget and send one message from its input with Enter. */
async function widgetWithReply(requests, options = {}) {
  const dom = loadWidget(chatFetch(requests, options.events || REPLY));
  const widget = new dom.VIZOCHOKWidget({
    apiKey: "pk_test",
    storeId: "store-1",
    language: options.language || "en",
  }).mount();
  widget.open();
  const shadow = widget.host.shadowRoot;
  const input = shadow.byTag("textarea")[0];
  input.value = "milk";
  input.dispatch("keydown", { key: "Enter", shiftKey: false, isComposing: false });
  await settle();
  return { dom, widget, shadow, input };
}

async function settle() {
  for (let index = 0; index < 20; index++) {
    await new Promise((resolve) => setImmediate(resolve));
  }
}

test("dom start sends configured language", async () => {
  const requests = [];
  await widgetWithReply(requests, { language: "ru" });
  assert.deepEqual(requests[0], {
    url: "http://127.0.0.1:8000/api/v1/conversations",
    body: { store_id: "store-1", language: "ru" },
  });
});

test("dom start without language sends none", async () => {
  const requests = [];
  const dom = loadWidget(chatFetch(requests, REPLY));
  const widget = new dom.VIZOCHOKWidget({ apiKey: "pk_test", storeId: "store-1" }).mount();
  widget.open();
  const input = widget.host.shadowRoot.byTag("textarea")[0];
  input.value = "молоко";
  input.dispatch("keydown", { key: "Enter", shiftKey: false, isComposing: false });
  await settle();
  assert.deepEqual(requests[0].body, { store_id: "store-1" });
  // The conversation, the message and the cart read after the first reply.
  assert.equal(requests.length, 3);
  assert.equal(requests[2].url, "http://127.0.0.1:8000/api/v1/conversations/conv_1?limit=1");
});

test("dom reply returns focus to the input", async () => {
  const { shadow, input, widget } = await widgetWithReply([]);
  assert.equal(widget.state.busy, false);
  assert.equal(input.disabled, false);
  assert.equal(shadow.activeElement, input);
});

test("dom add button names product and quotes it", async () => {
  const requests = [];
  const { shadow, input } = await widgetWithReply(requests);
  const card = shadow.byClass("vz-card")[0];
  const add = card.byTag("button")[0];
  assert.equal(add.getAttribute("aria-label"), "Add to cart: " + CARD.name);
  assert.equal(card.getAttribute("aria-label"), CARD.name);
  add.focus();
  add.click();
  await settle();
  // The name contains «», so the message quotes it with “” and the name stays whole.
  assert.equal(requests[requests.length - 1].body.text, "Add “" + CARD.name + "”");
  assert.equal(shadow.activeElement, input);
});

test("dom escape closes panel and focuses launcher", async () => {
  const { shadow, widget, input } = await widgetWithReply([]);
  const launcher = shadow.byClass("vz-launcher")[0];
  input.dispatch("keydown", { key: "Escape", isComposing: false });
  assert.equal(widget.nodes.panel.hidden, true);
  assert.equal(launcher.getAttribute("aria-expanded"), "false");
  assert.equal(shadow.activeElement, launcher);
});

test("dom close without focus inside keeps focus", async () => {
  const { shadow, widget, dom } = await widgetWithReply([]);
  shadow.activeElement = null;
  dom.document.activeElement = dom.document.body;
  widget.close();
  assert.equal(shadow.activeElement, null);
  assert.equal(dom.document.activeElement, dom.document.body);
});

test("dom finished reply is announced once", async () => {
  const { shadow } = await widgetWithReply([]);
  const transcript = shadow.byClass("vz-transcript")[0];
  const live = shadow.byClass("vz-live")[0];
  assert.equal(transcript.getAttribute("aria-live"), null);
  assert.equal(live.getAttribute("aria-live"), "polite");
  assert.equal(live.getAttribute("role"), "status");
  assert.equal(live.textContent, "Here is milk.");
});

test("dom add keeps focus on rebuilt card", async () => {
  const requests = [];
  const { dom, shadow } = await widgetWithReply(requests);
  const add = shadow.byClass("vz-card")[0].byTag("button")[0];
  add.focus();
  add.click();
  // The click rebuilt the transcript and disabled the new add button, so the new card has
  // the focus instead of the page's body.
  const card = shadow.byClass("vz-card")[0];
  assert.notEqual(card.byTag("button")[0], add);
  assert.equal(card.byTag("button")[0].disabled, true);
  assert.equal(shadow.activeElement, card);
  assert.notEqual(dom.document.activeElement, dom.document.body);
});

test("dom reply keeps focus on older card", async () => {
  const requests = [];
  const { widget, shadow } = await widgetWithReply(requests);
  shadow.byClass("vz-card")[0].focus();
  widget._onEvent({ type: "status", code: "searching" });
  assert.equal(shadow.activeElement, shadow.byClass("vz-card")[0]);
  widget._onEvent({ type: "text_delta", delta: "More milk." });
  assert.equal(shadow.activeElement, shadow.byClass("vz-card")[0]);
});

test("dom transcript is a focusable region", async () => {
  const { shadow, widget } = await widgetWithReply([], { language: "ru" });
  const transcript = shadow.byClass("vz-transcript")[0];
  const launcher = shadow.byClass("vz-launcher")[0];
  const live = shadow.byClass("vz-live")[0];
  assert.equal(transcript.getAttribute("role"), "region");
  assert.equal(transcript.getAttribute("aria-label"), "Разговор");
  assert.equal(transcript.tabIndex, 0);
  assert.equal(launcher.getAttribute("aria-controls"), widget.nodes.panel.id);
  assert.equal(widget.nodes.panel.id, "vz-panel");
  // The status region stays rendered while the panel is hidden.
  assert.equal(widget.nodes.panel.contains(live), false);
  assert.equal(live.parentNode, shadow);
  // The CSS that hides the launcher on short windows selects it as the panel's next sibling.
  const children = shadow.childNodes;
  assert.equal(children[children.indexOf(widget.nodes.panel) + 1], launcher);
});

test("dom cart change is announced", async () => {
  const { shadow } = await widgetWithReply([], { events: CART_REPLY });
  assert.equal(shadow.byClass("vz-live")[0].textContent, "Cart (1): Total 40.00");
});

test("dom status event is announced", async () => {
  const { shadow, widget } = await widgetWithReply([]);
  const live = shadow.byClass("vz-live")[0];
  widget._onEvent({ type: "status", code: "updating_cart" });
  assert.equal(live.textContent, "Updating the cart…");
  widget._onEvent({ type: "status", code: "toString" });
  assert.equal(live.textContent, "Working…");
  assert.equal(shadow.byClass("vz-status")[0].textContent, "Working…");
});

test("dom same error is announced again", async () => {
  const dom = loadWidget(async () =>
    response(429, { detail: "Too many messages.", code: "rate_limit_exceeded", retry_after: 5 })
  );
  const widget = new dom.VIZOCHOKWidget({ apiKey: "pk_test", storeId: "s", language: "en" });
  widget.mount().open();
  const shadow = widget.host.shadowRoot;
  const input = shadow.byTag("textarea")[0];
  const live = shadow.byClass("vz-live")[0];
  input.value = "milk";
  input.dispatch("keydown", { key: "Enter", shiftKey: false, isComposing: false });
  await settle();
  const first = live.childNodes[0];
  input.dispatch("keydown", { key: "Enter", shiftKey: false, isComposing: false });
  await settle();
  // A new element with the same text is an addition, which screen readers announce.
  assert.equal(live.childNodes.length, 1);
  assert.equal(live.childNodes[0].tagName, "DIV");
  assert.notEqual(live.childNodes[0], first);
  assert.equal(live.textContent, "Too many messages in a row. Try again in 5 s.");
});

test("dom sale price names both prices", async () => {
  const sale = Object.assign({}, CARD, { price: 50, promo_price: 40, promo_label: "-20%" });
  const events = [{ type: "product_cards", items: [sale] }, { type: "response_complete" }];
  const { shadow } = await widgetWithReply([], { events, language: "uk" });
  const hidden = shadow.byClass("vz-visually-hidden").map((node) => node.textContent);
  assert.deepEqual(hidden, ["Стара ціна ", "Ціна зі знижкою "]);
  assert.equal(
    shadow.byClass("vz-card-price")[0].textContent,
    "Стара ціна 50,00Ціна зі знижкою 40,00-20%"
  );
});

test("dom open cart list is focusable", async () => {
  const { shadow } = await widgetWithReply([], { events: CART_REPLY });
  const list = shadow.byClass("vz-cart")[0].byTag("ul")[0];
  assert.equal(list.tabIndex, 0);
  assert.equal(list.getAttribute("aria-label"), "Cart");
});

test("dom styles meet contrast and motion rules", () => {
  const source = fs.readFileSync(WIDGET_SCRIPT, "utf8");
  const styles = source.slice(source.indexOf("var STYLES = ["), source.indexOf('].join("\\n")'));
  // Nothing moves, so prefers-reduced-motion needs no rule of its own.
  assert.doesNotMatch(styles, /transition|animation|scroll-behavior/);
  assert.match(styles, /:focus-visible \{ outline: 2px solid/);
  const border = styles.match(/\.vz-form textarea \{[^}]*border: 1px solid (#[0-9a-f]{6})/)[1];
  const placeholder = styles.match(/::placeholder \{ color: (#[0-9a-f]{6}); opacity: 1/)[1];
  const oldPrice = Number(styles.match(/\.vz-old-price \{[^}]*opacity: ([.\d]+)/)[1]);
  assert.ok(contrast(border, "#ffffff") >= 3, border);
  assert.ok(contrast(placeholder, "#ffffff") >= 4.5, placeholder);
  assert.ok(contrast(blend("#1f2328", "#ffffff", oldPrice), "#ffffff") >= 4.5, String(oldPrice));
});

test("dom rejected message is announced", async () => {
  const dom = loadWidget(async (url) => response(429, {
    detail: "Too many messages.",
    code: "rate_limit_exceeded",
    retry_after: 17,
  }));
  const widget = new dom.VIZOCHOKWidget({ apiKey: "pk_test", storeId: "s", language: "en" });
  widget.mount().open();
  const input = widget.host.shadowRoot.byTag("textarea")[0];
  input.value = "milk";
  input.dispatch("keydown", { key: "Enter", shiftKey: false, isComposing: false });
  await settle();
  const live = widget.host.shadowRoot.byClass("vz-live")[0];
  assert.equal(live.textContent, "Too many messages in a row. Try again in 17 s.");
  assert.equal(input.value, "milk");
  assert.equal(widget.host.shadowRoot.activeElement, input);
});

test("dom server text gets automatic direction", async () => {
  const events = [
    { type: "text_delta", delta: "חלב" },
    { type: "product_cards", items: [CARD] },
    {
      type: "cart_changed",
      action: "item_selected",
      items: [{ sku: "h-1", name: "חלב", price: 45.9, promo_price: null, quantity: 1, unit: "pcs" }],
      total: 45.9,
    },
    { type: "response_complete" },
  ];
  const { shadow } = await widgetWithReply([], { events });
  const reply = shadow.byClass("vz-assistant").filter((node) => node.textContent === "חלב");
  assert.equal(reply.length, 1);
  assert.equal(reply[0].dir, "auto");
  assert.equal(shadow.byClass("vz-user")[0].dir, "auto");
  assert.equal(shadow.byClass("vz-card-name")[0].dir, "auto");
  assert.equal(shadow.byClass("vz-card-brand")[0].dir, "auto");
  const line = shadow.byClass("vz-cart")[0].byTag("li")[0];
  // Only the name span takes its own direction, not the quantity and price after it.
  assert.equal(line.dir, "");
  assert.equal(line.childNodes[0].dir, "auto");
  assert.equal(line.childNodes[0].textContent, "חלב");
  assert.equal(line.textContent, "חלב × 1 — 45.90");
});

test("dom broken product image is removed", async () => {
  const { shadow } = await widgetWithReply([]);
  const card = shadow.byClass("vz-card")[0];
  const image = card.byTag("img")[0];
  assert.equal(image.src, CARD.image_url);
  image.dispatch("error");
  assert.equal(card.byTag("img").length, 0);
});

test("dom open scrolls transcript to the end", async () => {
  const { widget, shadow } = await widgetWithReply([]);
  widget.close();
  const transcript = shadow.byClass("vz-transcript")[0];
  transcript.scrollTop = 0;
  transcript.scrollHeight = 900;
  widget.open();
  assert.equal(transcript.scrollTop, 900);
});

test("dom transcript children do not shrink", () => {
  const dom = loadWidget(async () => response(500, {}));
  const widget = new dom.VIZOCHOKWidget({ apiKey: "pk_test", storeId: "s" }).mount();
  const style = widget.host.shadowRoot.byTag("style")[0];
  // A full transcript would otherwise squeeze the scrolling row of product cards.
  assert.match(style.textContent, /\.vz-transcript > \* \{ flex-shrink: 0; \}/);
  assert.match(style.textContent, /\.vz-card-name[^{]*\{ overflow-wrap: anywhere; \}/);
});

test("dom card row keeps its scroll offset", async () => {
  const requests = [];
  const { shadow } = await widgetWithReply(requests);
  const row = shadow.byClass("vz-cards")[0];
  row.scrollLeft = 426;
  row.byTag("button")[0].click();
  await settle();
  const rows = shadow.byClass("vz-cards");
  assert.equal(rows.length, 2);
  assert.notEqual(rows[0], row);
  assert.equal(rows[0].scrollLeft, 426);
  assert.equal(rows[1].scrollLeft, 0);
});

test("dom cart stays open across renders", async () => {
  const { shadow, input } = await widgetWithReply([], { events: CART_REPLY });
  const details = shadow.byClass("vz-cart")[0].byTag("details")[0];
  assert.equal(details.open, false);
  details.open = true;
  details.dispatch("toggle");
  input.value = "more milk";
  input.dispatch("keydown", { key: "Enter", shiftKey: false, isComposing: false });
  await settle();
  const rebuilt = shadow.byClass("vz-cart")[0].byTag("details")[0];
  assert.notEqual(rebuilt, details);
  assert.equal(rebuilt.open, true);
});

// The cart that the first message loaded from the merchant, as the conversation reads back.
const LOADED_CART = {
  items: [{ sku: "b-1", name: "Bread", price: 18.6, promo_price: null, quantity: 1, unit: "pcs" }],
  total: 18.6,
};

/**
 * Return a fetch whose replies are `replies` in order and whose conversation reads back
 * with LOADED_CART once `readBack` resolves. It records each requested URL.
 */
function cartReadFetch(urls, replies, readBack) {
  let messages = 0;
  return async (url) => {
    urls.push(url);
    if (url.endsWith("/api/v1/conversations")) {
      return response(201, { conversation_id: "conv_1", assistant: "offline" });
    }
    if (url.endsWith("?limit=1")) {
      await readBack;
      return response(200, { conversation_id: "conv_1", messages: [], cart: LOADED_CART });
    }
    messages += 1;
    return response(200, { message_id: "msg_" + messages, events: replies[messages - 1] });
  };
}

test("dom first reply reads loaded cart", async () => {
  const urls = [];
  const dom = loadWidget(cartReadFetch(urls, [REPLY, REPLY], Promise.resolve()));
  const config = { apiKey: "pk_test", storeId: "store-1", language: "en" };
  const widget = new dom.VIZOCHOKWidget(config).mount();
  widget.open();

  widget.send("milk");
  await settle();
  widget.send("kefir");
  await settle();

  assert.deepEqual(urls, [
    "http://127.0.0.1:8000/api/v1/conversations",
    "http://127.0.0.1:8000/api/v1/conversations/conv_1/messages",
    "http://127.0.0.1:8000/api/v1/conversations/conv_1?limit=1",
    "http://127.0.0.1:8000/api/v1/conversations/conv_1/messages",
  ]);
  // The widget runs in another realm, so its objects are compared as JSON.
  assert.deepEqual(JSON.parse(JSON.stringify(widget.state.cart)), LOADED_CART);
  const summary = widget.host.shadowRoot.byClass("vz-cart")[0].byTag("summary")[0];
  assert.equal(summary.textContent, "Cart (1): Total 18.60");
});

test("dom first reply with cart change reads nothing", async () => {
  const urls = [];
  const dom = loadWidget(cartReadFetch(urls, [CART_REPLY], Promise.resolve()));
  const widget = new dom.VIZOCHOKWidget({ apiKey: "pk_test", storeId: "store-1" }).mount();
  widget.open();

  widget.send("milk");
  await settle();

  assert.equal(urls.length, 2);
  assert.equal(widget.state.cart.total, 40);
});

test("dom cart change wins over cart read", async () => {
  const urls = [];
  let finishReadBack = null;
  const readBack = new Promise((resolve) => {
    finishReadBack = resolve;
  });
  const dom = loadWidget(cartReadFetch(urls, [REPLY, CART_REPLY], readBack));
  const widget = new dom.VIZOCHOKWidget({ apiKey: "pk_test", storeId: "store-1" }).mount();
  widget.open();

  widget.send("milk");
  await settle();
  widget.send("add milk");
  await settle();
  finishReadBack();
  await settle();

  assert.equal(urls.length, 4);
  assert.equal(widget.state.cart.total, 40);
  assert.equal(widget.state.cart.items[0].sku, "m-1");
});

test("dom failed restore shows error and no cart", async () => {
  const requests = [];
  const dom = loadWidget(async (url) => {
    requests.push(url);
    throw new TypeError("Failed to fetch");
  });
  const config = { apiKey: "pk_test", storeId: "store-1", language: "en" };
  const key = dom.VIZOCHOKWidget.core.storageKey(
    dom.VIZOCHOKWidget.core.validateConfig(config, "http://127.0.0.1:8000")
  );
  dom.window.sessionStorage.setItem(key, "conv_1");
  const errors = [];
  const widget = new dom.VIZOCHOKWidget({ ...config, onError: (error) => errors.push(error.code) });
  widget.mount().open();
  await settle();
  const shadow = widget.host.shadowRoot;
  const message = "No connection to the chat. Check your internet and try again.";
  assert.deepEqual(requests, ["http://127.0.0.1:8000/api/v1/conversations/conv_1?limit=50"]);
  assert.deepEqual(errors, ["network_error"]);
  assert.deepEqual(shadow.byClass("vz-error").map((node) => node.textContent), [message]);
  assert.equal(shadow.byClass("vz-live")[0].textContent, message);
  assert.equal(shadow.byClass("vz-cart")[0].hidden, true);
  assert.equal(shadow.byClass("vz-cart")[0].textContent, "");
  // The conversation is kept for the next message.
  assert.equal(widget.conversationId, "conv_1");
  assert.equal(dom.window.sessionStorage.getItem(key), "conv_1");
  assert.equal(widget.state.busy, false);
});

test("dom end session during reply is ignored", async () => {
  const sessions = [];
  let resolveReply = null;
  const dom = loadWidget(async (url) => {
    if (url.endsWith("/api/v1/conversations")) {
      return response(201, { conversation_id: "conv_1", assistant: "offline" });
    }
    return new Promise((resolve) => {
      resolveReply = resolve;
    });
  });
  const widget = new dom.VIZOCHOKWidget({
    apiKey: "pk_test",
    storeId: "store-1",
    onSessionComplete: (summary) => sessions.push(summary.conversationId),
  });
  widget.mount().open();
  widget.send("milk");
  await settle();
  assert.equal(widget.state.busy, true);
  widget.endSession();
  assert.deepEqual(sessions, []);
  assert.equal(widget.conversationId, "conv_1");
  assert.equal(widget.state.entries.length, 1);

  // Completing the reply clears the widget's reply timer, which would keep Node running.
  resolveReply(response(200, { events: [{ type: "response_complete" }] }));
  await settle();
  assert.equal(widget.state.busy, false);
  widget.endSession();
  assert.deepEqual(sessions, ["conv_1"]);
});

test("dom new conversation keeps badge and closes cart", async () => {
  const { widget, shadow } = await widgetWithReply([], { events: CART_REPLY });
  const details = shadow.byClass("vz-cart")[0].byTag("details")[0];
  details.open = true;
  details.dispatch("toggle");
  assert.equal(shadow.byClass("vz-badge")[0].hidden, false);

  widget.endSession();

  assert.equal(widget.conversationId, null);
  assert.equal(widget.cartOpen, false);
  assert.equal(widget.state.assistant, "offline");
  assert.equal(shadow.byClass("vz-badge")[0].hidden, false);
});

test("dom reply after network error connects again", async () => {
  const calls = [];
  let failNext = true;
  const dom = loadWidget(async (url) => {
    if (url.endsWith("/api/v1/conversations")) {
      return response(201, { conversation_id: "conv_1", assistant: "offline" });
    }
    if (failNext) {
      failNext = false;
      throw new TypeError("Failed to fetch");
    }
    return response(200, { message_id: "msg_1", events: REPLY });
  });
  const widget = new dom.VIZOCHOKWidget({
    apiKey: "pk_test",
    storeId: "store-1",
    onConnect: (details) => calls.push(["connect", details.conversationId, details.restored]),
    onDisconnect: (details) => calls.push(["disconnect", details.conversationId, details.reason]),
  });
  widget.mount().open();

  widget.send("milk");
  await settle();
  widget.send("milk");
  await settle();
  widget.endSession();

  assert.deepEqual(calls, [
    ["connect", "conv_1", false],
    ["disconnect", "conv_1", "network_error"],
    ["connect", "conv_1", false],
    ["disconnect", "conv_1", "session_complete"],
  ]);
});

test("dom interrupted stream stays disconnected", async () => {
  const calls = [];
  const dom = loadWidget(async (url) => {
    if (url.endsWith("/api/v1/conversations")) {
      return response(201, { conversation_id: "conv_1", assistant: "offline" });
    }
    return response(200, { message_id: "msg_1", events: [{ type: "text_delta", delta: "Mi" }] });
  });
  const widget = new dom.VIZOCHOKWidget({
    apiKey: "pk_test",
    storeId: "store-1",
    onConnect: (details) => calls.push(["connect", details.conversationId]),
    onDisconnect: (details) => calls.push(["disconnect", details.reason]),
  });
  widget.mount().open();

  widget.send("milk");
  await settle();
  widget.send("milk");
  await settle();

  assert.deepEqual(calls, [
    ["connect", "conv_1"],
    ["disconnect", "network_error"],
    ["connect", "conv_1"],
    ["disconnect", "network_error"],
  ]);
  assert.equal(widget.connected, false);
});

/**
 * Load a page whose stored conversation `conv_1` reads back, with no messages, only when
 * the test calls `finishRestore`. Every other request gets no response.
 */
function pendingRestore() {
  let resolveRestore = null;
  const dom = loadWidget(
    () =>
      new Promise((resolve) => {
        resolveRestore = resolve;
      })
  );
  const config = { apiKey: "pk_test", storeId: "store-1" };
  const key = dom.VIZOCHOKWidget.core.storageKey(
    dom.VIZOCHOKWidget.core.validateConfig(config, "http://127.0.0.1:8000")
  );
  dom.window.sessionStorage.setItem(key, "conv_1");
  const finishRestore = () =>
    resolveRestore(response(200, { conversation_id: "conv_1", messages: [], cart: null }));
  return { dom, config, finishRestore };
}

test("dom unmount during restore connects nothing", async () => {
  const { dom, config, finishRestore } = pendingRestore();
  const calls = [];
  const widget = new dom.VIZOCHOKWidget({
    ...config,
    onConnect: (details) => calls.push(["connect", details.conversationId]),
    onDisconnect: (details) => calls.push(["disconnect", details.reason]),
  });
  widget.mount();
  await settle();

  widget.unmount();
  finishRestore();
  await settle();

  assert.deepEqual(calls, []);
  assert.equal(widget.connected, false);
  assert.equal(widget.restoring, null);
});

/**
 * Return a fetch that records each message's Idempotency-Key. The messages whose number is
 * in `failing` fail with a network error, and those in `interrupted` get a reply that stops
 * before `response_complete`.
 */
function keyedFetch(keys, failing, interrupted = []) {
  let messages = 0;
  return async (url, init) => {
    if (url.endsWith("/api/v1/conversations")) {
      return response(201, { conversation_id: "conv_1", assistant: "offline" });
    }
    if (url.endsWith("/api/v1/conversations/conv_1?limit=1")) {
      return response(200, { conversation_id: "conv_1", messages: [], cart: null });
    }
    messages += 1;
    keys.push(init.headers["Idempotency-Key"]);
    if (failing.includes(messages)) {
      throw new TypeError("Failed to fetch");
    }
    const events = interrupted.includes(messages) ? [{ type: "text_delta", delta: "Mi" }] : REPLY;
    return response(200, { message_id: "msg_" + messages, events });
  };
}

test("dom resend after network error keeps key", async () => {
  const keys = [];
  const dom = loadWidget(keyedFetch(keys, [1]));
  const widget = new dom.VIZOCHOKWidget({ apiKey: "pk_test", storeId: "store-1" }).mount();
  widget.open();

  widget.send("milk");
  await settle();
  widget.send("milk");
  await settle();
  widget.send("milk");
  await settle();

  assert.equal(keys.length, 3);
  assert.equal(keys[1], keys[0]);
  assert.notEqual(keys[2], keys[1]);
  assert.equal(typeof keys[0], "string");
  assert.ok(keys[0].length > 0);
});

test("dom other text after network error gets new key", async () => {
  const keys = [];
  const dom = loadWidget(keyedFetch(keys, [1]));
  const widget = new dom.VIZOCHOKWidget({ apiKey: "pk_test", storeId: "store-1" }).mount();
  widget.open();

  widget.send("milk");
  await settle();
  widget.send("bread");
  await settle();

  assert.equal(keys.length, 2);
  assert.notEqual(keys[1], keys[0]);
});

test("dom resend after busy keeps key", async () => {
  const keys = [];
  let messages = 0;
  const dom = loadWidget(async (url, init) => {
    if (url.endsWith("/api/v1/conversations")) {
      return response(201, { conversation_id: "conv_1", assistant: "offline" });
    }
    messages += 1;
    keys.push(init.headers["Idempotency-Key"]);
    if (messages === 1) {
      throw new TypeError("Failed to fetch");
    }
    if (messages === 2) {
      return response(409, { detail: "busy", code: "agent_busy" });
    }
    return response(200, { message_id: "msg_1", events: REPLY });
  });
  const widget = new dom.VIZOCHOKWidget({ apiKey: "pk_test", storeId: "store-1" }).mount();
  widget.open();

  for (let attempt = 0; attempt < 3; attempt++) {
    widget.send("milk");
    await settle();
  }

  assert.equal(keys.length, 3);
  assert.equal(keys[1], keys[0]);
  assert.equal(keys[2], keys[0]);
});

test("dom resend after interrupted stream keeps key", async () => {
  const keys = [];
  const dom = loadWidget(keyedFetch(keys, [], [1]));
  const widget = new dom.VIZOCHOKWidget({ apiKey: "pk_test", storeId: "store-1" }).mount();
  widget.open();

  widget.send("milk");
  await settle();
  widget.send("milk");
  await settle();

  assert.equal(keys.length, 2);
  assert.equal(keys[1], keys[0]);
});

test("dom replay after interrupted stream counts once", async () => {
  const keys = [];
  const dom = loadWidget(keyedFetch(keys, [2], [1]));
  const summaries = [];
  const widget = new dom.VIZOCHOKWidget({
    apiKey: "pk_test",
    storeId: "store-1",
    onSessionComplete: (summary) => summaries.push(summary),
  }).mount();
  widget.open();

  for (let attempt = 0; attempt < 3; attempt++) {
    widget.send("milk");
    await settle();
  }
  assert.equal(widget.messagesSent, 1);
  widget.send("bread");
  await settle();
  widget.endSession();

  assert.equal(keys.length, 4);
  assert.equal(keys[1], keys[0]);
  assert.equal(keys[2], keys[0]);
  assert.notEqual(keys[3], keys[0]);
  assert.equal(summaries.length, 1);
  assert.equal(summaries[0].messagesSent, 2);
});

test("dom new session forgets the failed key", async () => {
  const keys = [];
  const dom = loadWidget(keyedFetch(keys, [1]));
  const widget = new dom.VIZOCHOKWidget({ apiKey: "pk_test", storeId: "store-1" }).mount();
  widget.open();

  widget.send("milk");
  await settle();
  widget.endSession();
  widget.send("milk");
  await settle();

  assert.equal(keys.length, 2);
  assert.notEqual(keys[1], keys[0]);
});

/**
 * Return a fetch for a widget that a page reload mounts again. The stored conversation
 * reads back as `conv_1` with no messages, messages get keyedFetch's responses, and the
 * message numbers in `hanging` get no response at all.
 */
function reloadFetch(keys, failing, hanging = []) {
  const answer = keyedFetch(keys, failing);
  let messages = 0;
  return async (url, init) => {
    if (url.includes("/api/v1/conversations/conv_1?")) {
      return response(200, { conversation_id: "conv_1", messages: [], cart: null });
    }
    if (!url.endsWith("/api/v1/conversations")) {
      messages += 1;
      if (hanging.includes(messages)) {
        keys.push(init.headers["Idempotency-Key"]);
        return new Promise(() => {});
      }
    }
    return answer(url, init);
  };
}

/** Mount a widget with the same configuration on `dom`, as a reloaded page does. */
function mountAgain(dom, previous) {
  if (previous) {
    previous.unmount();
  }
  const widget = new dom.VIZOCHOKWidget({ apiKey: "pk_test", storeId: "store-1" }).mount();
  widget.open();
  return widget;
}

function pendingKey(dom) {
  const config = { apiKey: "pk_test", storeId: "store-1" };
  return dom.VIZOCHOKWidget.core.storageKey(
    dom.VIZOCHOKWidget.core.validateConfig(config, "http://127.0.0.1:8000"),
    "vizochok.pending.v1:"
  );
}

test("dom resend after reload during reply keeps key", async () => {
  const keys = [];
  const dom = loadWidget(reloadFetch(keys, [], [1]));
  const first = mountAgain(dom, null);
  // The reply timer of the request that never ends must not hold the test for 150 s.
  first.client.replyTimeoutMs = 20;
  first.send("milk");
  await settle();

  const second = mountAgain(dom, first);
  await settle();
  second.send("milk");
  await settle();

  assert.equal(keys.length, 2);
  assert.equal(keys[1], keys[0]);
  assert.equal(second.messagesSent, 1);
  // The complete reply removes the stored message.
  assert.equal(dom.window.sessionStorage.getItem(pendingKey(dom)), null);
  assert.equal(second.retryMessage, null);
});

test("dom reload after network error keeps key", async () => {
  const keys = [];
  const dom = loadWidget(reloadFetch(keys, [1]));
  const first = mountAgain(dom, null);
  first.send("milk");
  await settle();
  const stored = JSON.parse(dom.window.sessionStorage.getItem(pendingKey(dom)));

  const second = mountAgain(dom, first);
  await settle();
  second.send("milk");
  await settle();

  assert.deepEqual(stored, { text: "milk", key: keys[0] });
  assert.equal(keys.length, 2);
  assert.equal(keys[1], keys[0]);
});

test("dom complete reply keeps no key for a reload", async () => {
  const keys = [];
  const dom = loadWidget(reloadFetch(keys, []));
  const first = mountAgain(dom, null);
  first.send("milk");
  await settle();
  assert.equal(dom.window.sessionStorage.getItem(pendingKey(dom)), null);

  const second = mountAgain(dom, first);
  await settle();
  second.send("milk");
  await settle();

  assert.equal(keys.length, 2);
  assert.notEqual(keys[1], keys[0]);
});

test("dom reload ignores malformed stored message", async () => {
  const keys = [];
  const dom = loadWidget(reloadFetch(keys, []));
  for (const value of ["{", "null", '{"text": "milk"}', '{"text": "milk", "key": 7}']) {
    dom.window.sessionStorage.setItem(pendingKey(dom), value);
    const widget = mountAgain(dom, null);
    await settle();
    assert.equal(widget.retryMessage, null, value);
    widget.unmount();
  }
  assert.deepEqual(keys, []);
});

test("dom new session removes stored key", async () => {
  const keys = [];
  const dom = loadWidget(reloadFetch(keys, [1]));
  const first = mountAgain(dom, null);
  first.send("milk");
  await settle();
  first.endSession();
  assert.equal(dom.window.sessionStorage.getItem(pendingKey(dom)), null);

  const second = mountAgain(dom, first);
  await settle();
  second.send("milk");
  await settle();

  assert.equal(keys.length, 2);
  assert.notEqual(keys[1], keys[0]);
});

test("dom launcher icon needs no emoji font", () => {
  const dom = loadWidget(async () => response(500, {}));
  const widget = new dom.VIZOCHOKWidget({ apiKey: "pk_test", storeId: "s" }).mount();
  const launcher = widget.host.shadowRoot.byClass("vz-launcher")[0];
  const icons = launcher.byTag("svg");
  assert.equal(launcher.textContent, "");
  assert.equal(icons.length, 1);
  assert.equal(icons[0].namespaceURI, "http://www.w3.org/2000/svg");
  assert.equal(icons[0].getAttribute("aria-hidden"), "true");
  assert.equal(launcher.getAttribute("aria-label"), "Відкрити чат");
});

test("dom host has the widget language", () => {
  for (const language of ["uk", "en", "ru"]) {
    const dom = loadWidget(async () => response(500, {}));
    const widget = new dom.VIZOCHOKWidget({ apiKey: "pk_test", storeId: "s", language });
    widget.mount();
    assert.equal(widget.host.lang, language);
  }
});

test("dom open during restore focuses input after", async () => {
  const { dom, config, finishRestore } = pendingRestore();
  const widget = new dom.VIZOCHOKWidget(config).mount();
  widget.open();
  const shadow = widget.host.shadowRoot;
  const input = shadow.byTag("textarea")[0];
  // The input is disabled while the conversation is read back, so it cannot take the focus.
  assert.equal(input.disabled, true);
  assert.equal(shadow.activeElement, null);

  finishRestore();
  await settle();

  assert.equal(input.disabled, false);
  assert.equal(shadow.activeElement, input);
});

test("dom returned text fits the input height", async () => {
  const keys = [];
  const dom = loadWidget(keyedFetch(keys, [1]));
  const widget = new dom.VIZOCHOKWidget({ apiKey: "pk_test", storeId: "s" }).mount();
  widget.open();
  const input = widget.host.shadowRoot.byTag("textarea")[0];
  input.scrollHeight = 64;
  widget.send("milk and bread and two more things for the weekend");
  await settle();
  assert.equal(input.value, "milk and bread and two more things for the weekend");
  assert.equal(input.style.height, "66px");

  input.scrollHeight = 28;
  input.value = "kefir";
  input.dispatch("input");
  assert.equal(input.style.height, "30px");
});

test("dom input height rules", () => {
  const dom = loadWidget(async () => response(500, {}));
  const widget = new dom.VIZOCHOKWidget({ apiKey: "pk_test", storeId: "s" }).mount();
  const style = widget.host.shadowRoot.byTag("style")[0].textContent;
  assert.match(style, /\.vz-form textarea \{[^}]*max-height: 8em; overflow-y: auto; \}/);
  assert.match(style, /\.vz-form \{ display: flex; align-items: flex-end;/);
  assert.match(style, /\.vz-card \{ flex: 0 0 min\(150px, 42%\);/);
  assert.match(style, /\.vz-card button \{ margin-top: auto; \}/);
  assert.match(style, /\.vz-cart ul \{[^}]*max-height: 30vh; overflow-y: auto; \}/);
  assert.match(style, /height: min\(600px, calc\(100dvh - 110px\)\);/);
  assert.match(
    style,
    /@media \(pointer: coarse\) \{ \.vz-form textarea \{ font-size: max\(16px, 1em\); \} \}/
  );
});

/** Return a fetch whose stored conv_1 ends with the shopper's "milk" and no reply yet. */
function unansweredFetch(keys) {
  const answer = keyedFetch(keys, []);
  return async (url, init) => {
    if (url.includes("/api/v1/conversations/conv_1?")) {
      const messages = [{ role: "user", text: "milk" }];
      return response(200, { conversation_id: "conv_1", messages, cart: null });
    }
    return answer(url, init);
  };
}

test("dom reload before reply returns text", async () => {
  const keys = [];
  const dom = loadWidget(unansweredFetch(keys));
  const config = { apiKey: "pk_test", storeId: "store-1" };
  dom.window.sessionStorage.setItem(
    dom.VIZOCHOKWidget.core.storageKey(
      dom.VIZOCHOKWidget.core.validateConfig(config, "http://127.0.0.1:8000")
    ),
    "conv_1"
  );
  dom.window.sessionStorage.setItem(pendingKey(dom), JSON.stringify({ text: "milk", key: "k-1" }));
  const widget = mountAgain(dom, null);
  await settle();
  const shadow = widget.host.shadowRoot;
  const input = shadow.byTag("textarea")[0];
  assert.equal(input.value, "milk");

  input.dispatch("keydown", { key: "Enter", shiftKey: false, isComposing: false });
  await settle();

  assert.deepEqual(keys, ["k-1"]);
  // The message is shown once: the transcript has it from the read-back.
  assert.deepEqual(
    shadow.byClass("vz-user").map((node) => node.textContent),
    ["milk"]
  );
  assert.equal(shadow.byClass("vz-card").length, 1);
  assert.equal(input.value, "");
});

test("dom reload after reply leaves input empty", async () => {
  const keys = [];
  const dom = loadWidget(reloadFetch(keys, []));
  dom.window.sessionStorage.setItem(pendingKey(dom), JSON.stringify({ text: "milk", key: "k-1" }));
  const config = { apiKey: "pk_test", storeId: "store-1" };
  dom.window.sessionStorage.setItem(
    dom.VIZOCHOKWidget.core.storageKey(
      dom.VIZOCHOKWidget.core.validateConfig(config, "http://127.0.0.1:8000")
    ),
    "conv_1"
  );
  const widget = mountAgain(dom, null);
  await settle();
  // The read-back has no unanswered "milk", so nothing is put back into the input.
  assert.equal(widget.host.shadowRoot.byTag("textarea")[0].value, "");
  assert.deepEqual(keys, []);
});

/** Return a fetch whose stored conv_1 ends with the shopper's "milk" and its reply. */
function answeredFetch(keys) {
  const answer = keyedFetch(keys, []);
  return async (url, init) => {
    if (url.includes("/api/v1/conversations/conv_1?")) {
      const messages = [
        { role: "user", text: "milk" },
        { role: "assistant", events: REPLY },
      ];
      return response(200, { conversation_id: "conv_1", messages, cart: null });
    }
    return answer(url, init);
  };
}

test("dom reload after answered message forgets key", async () => {
  const keys = [];
  const dom = loadWidget(answeredFetch(keys));
  const config = { apiKey: "pk_test", storeId: "store-1" };
  dom.window.sessionStorage.setItem(
    dom.VIZOCHOKWidget.core.storageKey(
      dom.VIZOCHOKWidget.core.validateConfig(config, "http://127.0.0.1:8000")
    ),
    "conv_1"
  );
  // The page was left during the reply that the server then finished.
  dom.window.sessionStorage.setItem(pendingKey(dom), JSON.stringify({ text: "milk", key: "k-1" }));
  const widget = mountAgain(dom, null);
  await settle();

  assert.equal(widget.retryMessage, null);
  assert.equal(dom.window.sessionStorage.getItem(pendingKey(dom)), null);
  assert.equal(widget.host.shadowRoot.byTag("textarea")[0].value, "");

  // Asking for the same thing again is a new message, so the server processes it.
  widget.send("milk");
  await settle();

  assert.equal(keys.length, 1);
  assert.notEqual(keys[0], "k-1");
});

test("dom open fits input to placeholder", () => {
  const dom = loadWidget(async () => response(500, {}));
  const widget = new dom.VIZOCHOKWidget({ apiKey: "pk_test", storeId: "s" }).mount();
  const input = widget.host.shadowRoot.byTag("textarea")[0];
  // A placeholder that wraps to two lines in a narrow panel.
  input.scrollHeight = 50;

  widget.open();

  assert.equal(input.value, "");
  assert.equal(input.style.height, "52px");
});

/** Return a fetch that starts conversations with `assistant` and replies with REPLY. */
function assistantFetch(assistant) {
  return async (url) => {
    if (url.endsWith("/api/v1/conversations")) {
      return response(201, { conversation_id: "conv_1", assistant });
    }
    return response(200, { message_id: "msg_1", events: REPLY });
  };
}

const BADGE_EXPLANATIONS = {
  uk: "Відповідає офлайн-помічник: він розуміє короткі команди, а не вільну розмову.",
  en: "The offline assistant answers: it understands short commands, not free conversation.",
  ru: "Отвечает офлайн-ассистент: он понимает короткие команды, а не свободный разговор.",
};

test("dom badge explanation reaches keyboard", async () => {
  for (const [language, explanation] of Object.entries(BADGE_EXPLANATIONS)) {
    const { shadow } = await widgetWithReply([], { language });
    const badge = shadow.byClass("vz-badge")[0];
    const note = shadow.byClass("vz-badge-note")[0];
    assert.equal(badge.tagName, "BUTTON");
    assert.equal(badge.type, "button");
    assert.equal(badge.hidden, false);
    assert.equal(badge.title, explanation);
    assert.equal(note.textContent, explanation);
    assert.equal(badge.getAttribute("aria-describedby"), note.id);
    assert.equal(badge.getAttribute("aria-controls"), note.id);
    assert.equal(note.hidden, true);
    assert.equal(badge.getAttribute("aria-expanded"), "false");

    badge.focus();
    badge.click();

    assert.equal(note.hidden, false);
    assert.equal(badge.getAttribute("aria-expanded"), "true");
    assert.equal(shadow.activeElement, badge);

    badge.click();

    assert.equal(note.hidden, true);
    assert.equal(badge.getAttribute("aria-expanded"), "false");
  }
});

test("dom badge note sits under header", () => {
  const dom = loadWidget(async () => response(500, {}));
  const widget = new dom.VIZOCHOKWidget({ apiKey: "pk_test", storeId: "s" }).mount();
  const panel = widget.host.shadowRoot.byClass("vz-panel")[0];
  const children = panel.childNodes.map((node) => node.className);
  assert.deepEqual(children, ["vz-header", "vz-badge-note", "vz-transcript", "vz-cart", "vz-form"]);
  const style = widget.host.shadowRoot.byTag("style")[0].textContent;
  // More specific than `.vz-header button`, whose font size and padding would apply otherwise.
  assert.match(style, /\.vz-header \.vz-badge \{ display: block; font-size: 11px;/);
  // The badge's focus ring, 2px wide 1px out, stays clear of the title above it.
  assert.match(style, /\.vz-header \.vz-badge \{[^}]*margin-top: 3px; padding: 0;/);
  assert.match(style, /\.vz-header \.vz-badge:focus-visible \{ outline-offset: 1px; \}/);
  assert.match(style, /\.vz-header \.vz-badge\[hidden\] \{ display: none; \}/);
  assert.match(style, /\.vz-badge-note\[hidden\] \{ display: none; \}/);
});

test("dom badge note hidden without offline assistant", async () => {
  const dom = loadWidget(assistantFetch("llm"));
  const widget = new dom.VIZOCHOKWidget({ apiKey: "pk_test", storeId: "s" }).mount();
  widget.open();
  const shadow = widget.host.shadowRoot;
  const badge = shadow.byClass("vz-badge")[0];
  // The shopper opened the note in an earlier conversation with the offline assistant.
  widget.badgeNoteOpen = true;
  widget.send("milk");
  await settle();

  assert.equal(widget.state.assistant, "llm");
  assert.equal(badge.hidden, true);
  assert.equal(shadow.byClass("vz-badge-note")[0].hidden, true);
  assert.equal(badge.getAttribute("aria-expanded"), "false");
});

test("dom resize refits input once per frame", () => {
  const dom = loadWidget(async () => response(500, {}));
  const widget = new dom.VIZOCHOKWidget({ apiKey: "pk_test", storeId: "s" }).mount();
  const input = widget.host.shadowRoot.byTag("textarea")[0];
  input.scrollHeight = 28;
  widget.open();
  assert.equal(input.style.height, "30px");
  assert.equal(dom.window.listeners.get("resize").length, 1);

  // A narrower window wraps the placeholder to two lines.
  input.scrollHeight = 50;
  dom.window.dispatch("resize");
  dom.window.dispatch("resize");
  dom.window.dispatch("resize");

  assert.equal(dom.window.frames.size, 1);
  assert.equal(input.style.height, "30px");

  dom.window.runFrames();

  assert.equal(input.style.height, "52px");
  assert.equal(dom.window.frames.size, 0);

  // A wider window again: the next resize requests a new frame.
  input.scrollHeight = 28;
  dom.window.dispatch("resize");
  assert.equal(dom.window.frames.size, 1);
  dom.window.runFrames();
  assert.equal(input.style.height, "30px");
});

test("dom closed panel ignores resize", () => {
  const dom = loadWidget(async () => response(500, {}));
  const widget = new dom.VIZOCHOKWidget({ apiKey: "pk_test", storeId: "s" }).mount();
  const input = widget.host.shadowRoot.byTag("textarea")[0];
  assert.equal(dom.window.listeners.has("resize"), false);

  widget.open();
  widget.open();
  assert.equal(dom.window.listeners.get("resize").length, 1);
  dom.window.dispatch("resize");
  widget.close();

  assert.deepEqual(dom.window.listeners.get("resize"), []);
  assert.equal(dom.window.frames.size, 0);
  const height = input.style.height;
  input.scrollHeight = 90;
  dom.window.dispatch("resize");
  dom.window.runFrames();
  assert.equal(input.style.height, height);
});

test("dom unmount removes resize listener", () => {
  const dom = loadWidget(async () => response(500, {}));
  const widget = new dom.VIZOCHOKWidget({ apiKey: "pk_test", storeId: "s" }).mount();
  widget.open();
  dom.window.dispatch("resize");
  assert.equal(dom.window.frames.size, 1);

  widget.unmount();

  assert.deepEqual(dom.window.listeners.get("resize"), []);
  assert.equal(dom.window.frames.size, 0);
  assert.equal(widget.onResize, null);
  assert.equal(widget.resizeFrame, null);

  // Mounted and opened again, the widget listens again, with one listener.
  widget.mount().open();
  assert.equal(dom.window.listeners.get("resize").length, 1);
});
