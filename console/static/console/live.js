// Live updates for dashboard pages: a WebSocket per page tells us that something changed, and
// the page's live region is re-rendered by the server (?fragment=live), so the browser never
// has to know the shape of domain events.
(function () {
  "use strict";

  var MAX_RETRIES = 20;
  var FEED_LENGTH = 12;

  function socketUrl(path) {
    var scheme = window.location.protocol === "https:" ? "wss://" : "ws://";
    return scheme + window.location.host + path;
  }

  function setStatus(state, text) {
    var el = document.getElementById("live-status");
    if (!el) return;
    el.hidden = false;
    el.classList.toggle("is-live", state === "live");
    el.classList.toggle("is-down", state === "down");
    el.querySelector(".live-label").textContent = text;
  }

  function describe(event) {
    var parts = [event.kind || "event"];
    ["vin", "ecu_id", "state", "status", "outcome", "progress", "current_step", "error"].forEach(
      function (key) {
        var value = event[key];
        if (value === undefined || value === null || value === "") return;
        if (key === "progress") { if (value > 0) parts.push(value + " %"); return; }
        parts.push(String(value));
      }
    );
    return parts.join(" · ");
  }

  function addToFeed(event) {
    var feed = document.getElementById("live-feed");
    if (!feed) return;
    var empty = feed.querySelector(".empty");
    if (empty) empty.remove();
    var item = document.createElement("li");
    var time = document.createElement("time");
    time.textContent = new Date().toLocaleTimeString();
    item.appendChild(time);
    item.appendChild(document.createTextNode(describe(event)));
    feed.insertBefore(item, feed.firstChild);
    while (feed.children.length > FEED_LENGTH) feed.removeChild(feed.lastChild);
  }

  function openDetails(region) {
    var open = {};
    region.querySelectorAll("details[id]").forEach(function (d) { open[d.id] = d.open; });
    return open;
  }

  function kpiValues(region) {
    var values = {};
    region.querySelectorAll("[data-kpi]").forEach(function (el) { values[el.dataset.kpi] = el.textContent; });
    return values;
  }

  function LiveRegion(region, url) {
    this.region = region;
    this.url = url;
    this.pending = false;
    this.running = false;
    this.timer = null;
  }

  LiveRegion.prototype.schedule = function () {
    var self = this;
    if (self.timer) return;
    // Bursts of events (a wave of vehicles reporting) collapse into one refresh.
    self.timer = window.setTimeout(function () { self.timer = null; self.refresh(); }, 150);
  };

  LiveRegion.prototype.refresh = function () {
    var self = this;
    if (self.running) { self.pending = true; return; }
    self.running = true;
    fetch(self.url, { credentials: "same-origin", headers: { "X-Requested-With": "fetch" } })
      .then(function (response) {
        if (!response.ok) throw new Error("refresh failed: " + response.status);
        return response.text();
      })
      .then(function (html) {
        var open = openDetails(self.region);
        var before = kpiValues(self.region);
        self.region.innerHTML = html;
        Object.keys(open).forEach(function (id) {
          var d = document.getElementById(id);
          if (d) d.open = open[id];
        });
        self.region.querySelectorAll("[data-kpi]").forEach(function (el) {
          if (before[el.dataset.kpi] !== undefined && before[el.dataset.kpi] !== el.textContent) {
            el.parentElement.classList.add("flash");
          }
        });
        self.region.dataset.refreshedAt = String(Date.now());
        document.dispatchEvent(new CustomEvent("live:refreshed"));
      })
      .catch(function (err) { console.warn(err); })
      .then(function () {
        self.running = false;
        if (self.pending) { self.pending = false; self.refresh(); }
      });
  };

  function connect(path, onEvent) {
    var retries = 0;
    function open() {
      setStatus("connecting", "connecting");
      var ws = new WebSocket(socketUrl(path));
      ws.onopen = function () { retries = 0; setStatus("live", "live"); };
      ws.onmessage = function (message) {
        var event;
        try { event = JSON.parse(message.data); } catch (e) { return; }
        if (event.kind === "hello") { document.body.dataset.liveGroup = event.group; return; }
        onEvent(event);
      };
      ws.onclose = function (close) {
        if (close.code >= 4400 && close.code < 4500) { setStatus("down", "not authorised"); return; }
        if (retries >= MAX_RETRIES) { setStatus("down", "offline"); return; }
        retries += 1;
        setStatus("down", "reconnecting");
        window.setTimeout(open, Math.min(30000, 500 * Math.pow(2, retries)));
      };
    }
    open();
  }

  function initUdsForm() {
    var form = document.getElementById("uds-form");
    if (!form) return;
    var service = form.querySelector("#id_service");
    var params = form.querySelector("#id_parameters");
    var preview = form.querySelector("#uds-preview");
    var help = form.querySelector("#param-help");
    var kind = form.querySelector("#param-kind");
    function render() {
      var option = service.options[service.selectedIndex];
      var hex = (option.dataset.sid + params.value.replace(/\s+/g, "")).toUpperCase();
      preview.value = hex.match(/.{1,2}/g).join(" ");
      help.textContent = option.dataset.help;
      kind.textContent = "(" + option.dataset.param + ")";
    }
    service.addEventListener("change", function () {
      params.value = service.options[service.selectedIndex].dataset.default;
      render();
    });
    params.addEventListener("input", render);
    render();
  }

  function initAutosubmit() {
    document.querySelectorAll("select[data-autosubmit]").forEach(function (select) {
      select.addEventListener("change", function () { if (select.value) select.form.submit(); });
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    initUdsForm();
    initAutosubmit();
    var body = document.body;
    var region = document.getElementById("live-region");
    if (!body.dataset.wsPath || !region || !("WebSocket" in window)) return;
    var live = new LiveRegion(region, body.dataset.liveUrl);
    connect(body.dataset.wsPath, function (event) {
      addToFeed(event);
      live.schedule();
    });
  });
})();
