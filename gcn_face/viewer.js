// viewer.html's page script (gcn_face/viewer.py inlines it after three.js and OrbitControls
// and the face's data). Orbit: drag to turn, wheel to zoom, right-drag to pan; the buttons
// (or the keys 1-9, or #<texture> in the address) switch the per-vertex colours.
'use strict';
(function () {
  const data = window.GCN_FACE;

  function decode(base64, Type) {
    const bytes = Uint8Array.from(atob(base64), (c) => c.charCodeAt(0));
    return new Type(bytes.buffer);
  }

  const geometry = new THREE.BufferGeometry();
  geometry.setAttribute('position', new THREE.BufferAttribute(decode(data.positions, Float32Array), 3));
  geometry.setIndex(new THREE.BufferAttribute(decode(data.triangles, Uint32Array), 1));
  geometry.computeVertexNormals();
  const colors = {};
  for (const name of data.order) {
    colors[name] = new THREE.BufferAttribute(decode(data.colors[name], Uint8Array), 3, true);
  }
  geometry.setAttribute('color', colors[data.order[0]]);
  geometry.computeBoundingSphere();

  const material = new THREE.MeshLambertMaterial({vertexColors: true, side: THREE.DoubleSide});
  const mesh = new THREE.Mesh(geometry, material);
  const scene = new THREE.Scene();
  scene.background = new THREE.Color(data.background);
  scene.add(mesh);

  const sphere = geometry.boundingSphere;
  const camera = new THREE.PerspectiveCamera(data.fov_y, window.innerWidth / window.innerHeight,
                                             sphere.radius * 0.05, sphere.radius * 50);
  camera.position.set(sphere.center.x, sphere.center.y,
                      sphere.center.z + sphere.radius / Math.tan(data.fov_y * Math.PI / 360) * 1.1);
  scene.add(new THREE.AmbientLight(0xffffff, data.ambient));
  const light = new THREE.DirectionalLight(0xffffff, 1.0 - data.ambient);
  camera.add(light);  // a head light: the face is lit from wherever it is seen
  light.position.set(0, 0, 1);
  scene.add(camera);

  const renderer = new THREE.WebGLRenderer({antialias: true, preserveDrawingBuffer: true});
  renderer.setPixelRatio(window.devicePixelRatio || 1);
  renderer.setSize(window.innerWidth, window.innerHeight);
  document.getElementById('view').appendChild(renderer.domElement);
  const controls = new THREE.OrbitControls(camera, renderer.domElement);
  controls.target.copy(sphere.center);
  controls.update();

  const buttons = {};
  function show(name) {
    if (!(name in colors)) return;
    geometry.setAttribute('color', colors[name]);
    for (const [key, button] of Object.entries(buttons)) {
      button.classList.toggle('on', key === name);
    }
    document.body.dataset.texture = name;
  }
  const bar = document.getElementById('buttons');
  data.order.forEach((name, i) => {
    const button = document.createElement('button');
    button.textContent = `${i + 1} ${data.labels[name]}`;
    button.addEventListener('click', () => show(name));
    bar.appendChild(button);
    buttons[name] = button;
  });
  window.addEventListener('keydown', (e) => show(data.order[Number(e.key) - 1]));
  window.addEventListener('hashchange', () => show(location.hash.slice(1)));
  show(location.hash.slice(1) in colors ? location.hash.slice(1) : data.order[0]);

  window.addEventListener('resize', () => {
    camera.aspect = window.innerWidth / window.innerHeight;
    camera.updateProjectionMatrix();
    renderer.setSize(window.innerWidth, window.innerHeight);
  });
  function frame() {
    controls.update();
    renderer.render(scene, camera);
    requestAnimationFrame(frame);
  }
  frame();
})();
