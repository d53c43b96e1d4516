# Published: the Live API skill's "Ephemeral Tokens (Client-Side Auth)" (Python): the
# server mints a token (the guide's snippet), the client "uses token.name as API key" in
# the guide's text example.
import asyncio
import datetime
import sys
from google import genai

mode = sys.argv[1]

if mode == "mint":
    client = genai.Client(api_key="GEMINI_API_KEY")
    now = datetime.datetime.now(tz=datetime.timezone.utc)
    token = client.auth_tokens.create(config={
        "uses": 1,
        "expire_time": now + datetime.timedelta(minutes=30),
        "new_session_expire_time": now + datetime.timedelta(minutes=1)
    })
    print(token.name)
else:
    # Client uses token.name as API key
    client = genai.Client(api_key=sys.argv[2])
    model = "gemini-2.0-flash-live-001"
    config = {"response_modalities": ["TEXT"]}

    async def main():
        async with client.aio.live.connect(model=model, config=config) as session:
            message = "Hello, how are you?"
            await session.send_client_content(
                turns={"role": "user", "parts": [{"text": message}]}, turn_complete=True
            )
            async for response in session.receive():
                if response.text is not None:
                    print(response.text, end="")

    asyncio.run(main())
