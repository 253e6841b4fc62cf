// The leaderboard page's sortable tables: lm_eval_cola/reports/render.py inlines this file.
// Clicking a column header (or Enter / Space on it) sorts the table's rows by that column:
// the first click descending (best scores first), the next ascending, and so on. Each cell
// carries its sort key in data-sort: a number, a text, or "" for a missing value, which
// stays last in both directions (a missing score is never the best nor the worst).
(function () {
  "use strict";

  // Two present keys: as numbers where both are, else as text.
  function compare(a, b) {
    var x = Number(a), y = Number(b);
    if (!isNaN(x) && !isNaN(y)) {
      return x - y;
    }
    return a.localeCompare(b);
  }

  function sortBy(table, header, column) {
    var body = table.tBodies[0];
    var descending = header.getAttribute("aria-sort") !== "descending";
    var rows = Array.prototype.slice.call(body.rows).map(function (row, index) {
      return { row: row, index: index, key: row.cells[column].getAttribute("data-sort") || "" };
    });
    rows.sort(function (a, b) {
      if (a.key === "" && b.key === "") {
        return a.index - b.index;
      }
      if (a.key === "") {
        return 1;
      }
      if (b.key === "") {
        return -1;
      }
      var order = compare(a.key, b.key);
      return (descending ? -order : order) || a.index - b.index;
    });
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (cell) {
      cell.removeAttribute("aria-sort");
    });
    header.setAttribute("aria-sort", descending ? "descending" : "ascending");
    rows.forEach(function (item) {
      body.appendChild(item.row);
    });
  }

  document.querySelectorAll("table.sortable").forEach(function (table) {
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (header, column) {
      header.tabIndex = 0;
      header.addEventListener("click", function () {
        sortBy(table, header, column);
      });
      header.addEventListener("keydown", function (event) {
        if (event.key === "Enter" || event.key === " ") {
          event.preventDefault();
          sortBy(table, header, column);
        }
      });
    });
  });
})();
