// Drives a live Vizochok server with the widget's own ChatClient and reducer, then prints
// what it observed as one JSON object for tests/conversations/test_widget_e2e.py to check.
// Usage: node e2e_client.js API_BASE PUBLIC_KEY STORE_ID LANGUAGE SEARCH_TEXT
"use strict";

const path = require("node:path");

const core = require(path.join(__dirname, "..", "..", "conversations", "widget", "vizochok-widget.js"));

async function main() {
  const [apiBase, apiKey, storeId, language, searchText] = process.argv.slice(2);
  const config = core.validateConfig({ apiKey, storeId, apiBase, language }, null);
  const client = new core.ChatClient(config);
  const result = {};

  const conversation = await client.startConversation();
  result.conversation = conversation;
  const id = conversation.conversation_id;

  let state = core.addShopperMessage(core.initialState(), searchText);
  const deltas = [];
  const streamed = await client.sendMessage(id, searchText, {
    stream: true,
    onEvent: (event) => {
      state = core.reduceEvent(state, event);
      if (event.type === "text_delta") {
        deltas.push(event.delta);
      }
    },
  });
  result.streamedText = deltas.join("");
  result.streamedTypes = streamed.events.map((event) => event.type);
  result.streamedMessageId = streamed.messageId;
  const cards = state.entries[1].parts.filter((part) => part.kind === "cards");
  result.cardSkus = cards.flatMap((part) => part.items.map((item) => item.sku));

  // Press the add button of every card in turn, without streaming.
  result.adds = [];
  const sentKeys = [];
  for (const card of cards.flatMap((part) => part.items)) {
    const text = core.addMessageText(card, language);
    state = core.addShopperMessage(state, text);
    const cartEvents = [];
    const idempotencyKey = core.newIdempotencyKey();
    sentKeys.push({ text, idempotencyKey });
    const reply = await client.sendMessage(id, text, {
      stream: false,
      idempotencyKey,
      onEvent: (event) => {
        state = core.reduceEvent(state, event);
        if (event.type === "cart_changed") {
          cartEvents.push(core.cartChangedEvent(event));
        }
      },
    });
    result.adds.push({
      text,
      types: reply.events.map((event) => event.type),
      hasMessageId: typeof reply.messageId === "string" && reply.messageId.startsWith("msg_"),
      cartEvents,
    });
  }
  result.busy = state.busy;
  result.cart = state.cart;
  result.entryRoles = state.entries.map((entry) => entry.role);

  // Send the first add again with its key, as after a lost response, as a stream.
  const replayed = await client.sendMessage(id, sentKeys[0].text, {
    stream: true,
    idempotencyKey: sentKeys[0].idempotencyKey,
  });
  result.replayTypes = replayed.events.map((event) => event.type);

  const restored = core.restoreState(await client.getConversation(id));
  result.restoredAssistant = restored.assistant;
  result.restoredCart = restored.cart;
  result.restoredRoles = restored.entries.map((entry) => entry.role);

  try {
    await client.sendMessage("conv_AAAAAAAAAAAAAAAAAAAAAA", "молоко", { stream: true });
    result.unknownConversation = "no error";
  } catch (error) {
    result.unknownConversation = core.errorInfo(error);
  }
  process.stdout.write(JSON.stringify(result));
}

main().catch((error) => {
  process.stderr.write(String(error && error.stack ? error.stack : error) + "\n");
  process.exit(1);
});
