// Progressive enhancement only: every page works without this file.
// Adds a "Copy" button to code snippets and secrets.
document.querySelectorAll("pre > code").forEach(function (el) {
  if (!navigator.clipboard) return;
  var holder = el.closest("pre") || el;
  var button = document.createElement("button");
  button.type = "button";
  button.className = "copy";
  button.textContent = "Copy";
  button.addEventListener("click", function () {
    navigator.clipboard.writeText(el.textContent.trim()).then(function () {
      button.textContent = "Copied";
      setTimeout(function () { button.textContent = "Copy"; }, 1500);
    }, function () { button.textContent = "Select and copy"; });
  });
  holder.parentNode.insertBefore(button, holder);
  holder.parentNode.style.position = "relative";
});
