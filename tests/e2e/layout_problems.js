// What a layout must not do (tests/e2e/test_account_journeys.py): overflow the viewport or a box,
// or break a short label (tab, button, tag, term, heading) inside a word: a new line may start
// only at a space or a punctuation mark. Evaluated in the page; answers a list of problems.
() => {
  const problems = [];
  const root = document.documentElement;
  if (root.scrollWidth > window.innerWidth + 1) problems.push(`page ${root.scrollWidth}px wide in ${window.innerWidth}px`);
  const shown = (node) => node.getClientRects().length > 0 && getComputedStyle(node).visibility !== "hidden";
  const name = (node) => `${node.tagName.toLowerCase()}${node.id ? "#" + node.id : ""} "${node.textContent.trim().slice(0, 40)}"`;
  for (const node of document.querySelectorAll("header *, main *, footer *")) {
    if (!shown(node) || node.closest(".visually-hidden")) continue;
    if (["INPUT", "IMG", "svg", "TEXTAREA", "SELECT"].includes(node.tagName)) continue;
    const style = getComputedStyle(node);
    if (style.display === "inline" || ["auto", "scroll"].includes(style.overflowX)) continue;
    if (node.clientWidth > 0 && node.scrollWidth > node.clientWidth + 1) problems.push(`overflows: ${name(node)}`);
  }
  const word = /[\p{L}\p{N}]/u;
  for (const node of document.querySelectorAll('[role="tab"], button, .tag, th, dt, h1, h2, h3')) {
    if (!shown(node)) continue;
    const walker = document.createTreeWalker(node, NodeFilter.SHOW_TEXT);
    let before = null;
    while (walker.nextNode()) {
      const text = walker.currentNode;
      for (let index = 0; index < text.length; index += 1) {
        if (/\s/.test(text.data[index])) {
          // A space ends a word (at a line's end it has no box).
          if (before) before.character = " ";
          continue;
        }
        const range = document.createRange();
        range.setStart(text, index);
        range.setEnd(text, index + 1);
        const box = range.getClientRects()[0];
        if (!box || !box.width) continue;
        const character = text.data[index];
        if (before && box.top > before.top + before.height / 2 && word.test(character) && word.test(before.character)) {
          problems.push(`word broken across lines: ${name(node)}`);
        }
        before = { top: box.top, height: box.height, character };
      }
    }
  }
  return [...new Set(problems)];
}
