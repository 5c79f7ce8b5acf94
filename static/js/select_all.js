// "Select all" for a list of checkboxes (the approval queue). Progressive: the box is hidden
// until this script runs; without it each customer is ticked by hand.
(function () {
  "use strict";
  for (const all of document.querySelectorAll("input[data-select-all]")) {
    const boxes = () => [...document.querySelectorAll(`input[name="${all.dataset.selectAll}"]`)];
    const reflect = () => {
      const ticked = boxes().filter((box) => box.checked).length;
      all.checked = ticked > 0 && ticked === boxes().length;
      all.indeterminate = ticked > 0 && ticked < boxes().length;
    };
    all.addEventListener("change", () => {
      for (const box of boxes()) box.checked = all.checked;
    });
    for (const box of boxes()) box.addEventListener("change", reflect);
    reflect();
    all.closest("[hidden]")?.removeAttribute("hidden");
  }
})();
