// hcm serve: the one script of every page (the content security policy allows no inline script).
document.addEventListener("DOMContentLoaded", () => {
  // Run page: a click on "play" plays that item's clip in the player above the table.
  const player = document.getElementById("sample-player");
  document.querySelectorAll("a.play").forEach((link) => {
    link.addEventListener("click", (event) => {
      if (!player) return;
      event.preventDefault();
      player.hidden = false;
      player.src = link.dataset.src;
      player.dataset.playing = link.closest("tr").querySelector("a.explain").textContent;
      player.play().catch(() => {});  // a browser that refuses autoplay leaves the controls to the user
    });
  });
  // Predict page: refuse a file over the limit before sending it; show progress while the server works.
  const form = document.getElementById("predict");
  if (form) {
    form.addEventListener("submit", (event) => {
      const file = form.querySelector("input[type=file]").files[0];
      const most = Number(form.dataset.maxBytes);
      if (file && most && file.size > most) {
        event.preventDefault();
        alert(`${file.name} is ${(file.size / 1048576).toFixed(1)} MB; this server takes at most ${(most / 1048576).toFixed(1)} MB`);
        return;
      }
      form.querySelector("button[type=submit]").disabled = true;
      document.getElementById("progress").hidden = false;
    });
  }
});
