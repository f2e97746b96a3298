// Nimbus sample: a JavaScript web app built into a wasi:http component.
// GET  /path?name=X  -> 200 "Hello from JavaScript, /path!" (+ " name=X" if given)
// POST /path         -> 200 echoing the request body
addEventListener('fetch', (event) => event.respondWith(handle(event.request)));

async function handle(request) {
  const url = new URL(request.url);
  const headers = { 'content-type': 'text/plain; charset=utf-8' };
  if (request.method === 'POST') {
    const body = await request.text();
    return new Response(`You posted ${body.length} bytes: ${body}\n`, { headers });
  }
  if (request.method !== 'GET' && request.method !== 'HEAD') {
    return new Response('method not allowed\n', { status: 405, headers });
  }
  let text = `Hello from JavaScript, ${url.pathname}!`;
  const name = url.searchParams.get('name');
  if (name !== null) text += ` name=${name}`;
  return new Response(text + '\n', { headers });
}
