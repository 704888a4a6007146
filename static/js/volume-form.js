// New volume form: preset buttons fill the driver option rows, "Add" buttons add rows.
// Without this script the preset buttons submit the form and the server fills the rows.
(function () {
  "use strict";

  function presets() {
    var el = document.getElementById("volume-presets");
    return el ? JSON.parse(el.textContent) : {};
  }

  function addRow(table, key, value) {
    var tbody = table.querySelector("tbody");
    var template = tbody.querySelector("tr");
    var row = template.cloneNode(true);
    var inputs = row.querySelectorAll("input");
    inputs[0].value = key || "";
    inputs[1].value = value || "";
    tbody.appendChild(row);
    return row;
  }

  document.addEventListener("click", function (event) {
    var button = event.target.closest("[data-preset]");
    if (button) {
      var preset = presets()[button.dataset.preset];
      var table = document.querySelector("table[data-rows=opt]");
      if (!preset || !table) return;
      event.preventDefault();
      var rows = table.querySelectorAll("tbody tr");
      for (var i = 1; i < rows.length; i++) rows[i].remove();
      var first = rows[0].querySelectorAll("input");
      first[0].value = preset.options[0][0];
      first[1].value = preset.options[0][1];
      for (var j = 1; j < preset.options.length; j++) addRow(table, preset.options[j][0], preset.options[j][1]);
      addRow(table, "", "");
      return;
    }
    var add = event.target.closest("[data-add-row]");
    if (add) {
      event.preventDefault();
      var target = document.querySelector("table[data-rows=" + add.dataset.addRow + "]");
      if (target) addRow(target, "", "").querySelector("input").focus();
    }
  });

  // The add-row buttons only work with this script: show them once it runs (also after htmx swaps).
  function reveal() {
    document.querySelectorAll("[data-add-row]").forEach(function (b) { b.hidden = false; });
  }
  document.addEventListener("DOMContentLoaded", reveal);
  document.addEventListener("htmx:afterSettle", reveal);
})();
