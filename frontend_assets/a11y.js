/* Accessible names and roles that Dash 4's components leave out (found by axe-core in the browser tests):
 * slider handles and option lists get their control's label as a name, option lists lose the listbox role
 * their native radio/checkbox inputs already carry, the dropdown's focus stand-in stops hiding a focusable
 * element from screen readers, and the upload's hidden file input leaves the tab order to the drop zone's
 * "choose a file" button. Dash re-renders pages, so
 * new nodes are patched as they appear. */
(function () {
    function controlLabel(el) {
        const control = el.closest('.control');
        const label = control && control.querySelector(':scope > label');
        return label ? label.textContent.trim() : '';
    }

    function patch(root) {
        root.querySelectorAll('.dash-dropdown-focus-target[aria-hidden]').forEach(function (el) {
            el.removeAttribute('aria-hidden');
            el.setAttribute('aria-label', (controlLabel(el) || 'choose') + ': open the list');
        });
        root.querySelectorAll('[role=slider]:not([aria-label])').forEach(function (el) {
            const thumbs = el.parentElement ? el.parentElement.querySelectorAll('[role=slider]') : [el];
            const name = controlLabel(el) || 'value';
            const which = thumbs.length === 2 ? (thumbs[0] === el ? ', from' : ', to') : '';
            el.setAttribute('aria-label', name + which);
        });
        root.querySelectorAll('.dash-options-list').forEach(function (el) {
            if (el.closest('.dash-dropdown-content')) { return; }  // a real listbox: the dropdown's menu
            const role = el.classList.contains('dash-radioitems') ? 'radiogroup' : 'group';
            if (el.getAttribute('role') !== role) { el.setAttribute('role', role); }
            if (!el.getAttribute('aria-label')) { el.setAttribute('aria-label', controlLabel(el) || 'options'); }
            // React sets aria-selected again whenever an option's state changes
            el.querySelectorAll(':scope > [role=option], :scope > [aria-selected]').forEach(function (option) {
                option.removeAttribute('role');
                option.removeAttribute('aria-selected');
            });
        });
        // the drop zone's visible "choose a file" button takes the keyboard; the hidden input it opens does not
        root.querySelectorAll('.dropzone input[type=file]:not([aria-label])').forEach(function (input) {
            input.setAttribute('tabindex', '-1');
            input.setAttribute('aria-label', 'image file to upload');
        });
    }

    let pending = false;
    new MutationObserver(function () {
        if (pending) { return; }
        pending = true;
        requestAnimationFrame(function () { pending = false; patch(document); });
    }).observe(document.documentElement, {childList: true, subtree: true, attributes: true,
                                           attributeFilter: ['role', 'aria-selected', 'aria-hidden']});
})();
