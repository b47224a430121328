// Keyboard use of elements that act on click but are not buttons (a run row's upper part selects the run):
// Enter or Space on a focused one clicks it, as on a button.
document.addEventListener("keydown", (event) => {
    const target = event.target;
    if (!(target instanceof HTMLElement) || target.getAttribute("role") !== "button" || target.tagName === "BUTTON") {
        return;
    }
    if (event.key === "Enter" || event.key === " ") {
        event.preventDefault();  // Space would scroll the page
        target.click();
    }
});
